"""Feature transfer between text models: hidden states through a Linear connector (TinyBERT's W_h),
attention maps with AttentionKL (MiniLM), CRD on sentence vectors, and the same terms from YAML.

AttentionKL is pinned to values computed by hand; the pipeline tests build the objective as a run
does (:func:`distil.engine.objective.build_objective`) and train small real models with the trainer,
which cuts every batch to its own length.
"""

import math

import pytest
import torch
from loss_helpers import assert_no_teacher_grad, student_and_teacher_grads
from torch import nn

from distil.config import validate_config
from distil.data import Split
from distil.engine.connectors import build_token_connector
from distil.engine.methods import METHODS
from distil.engine.objective import TermSpec, build_objective
from distil.engine.taps import length_axes
from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
from distil.engine.trainer import TrainSettings, fit
from distil.errors import ConfigError
from distil.losses import AttentionKL, FitNet, build_loss
from distil.models import build_model
from distil.session import RunSession

V = 300  # vocabulary of the random token data
LENGTH = 16


def transformer(width, heads=4, seed=0, **kwargs):
    return build_model(
        "text_transformer", input_shape=(LENGTH,), num_classes=2, vocab_size=V, vocab="teacher", width=width, depth=2, heads=heads, seed=seed, **kwargs
    )


def token_data(n, seed=0, length=LENGTH):
    """``n`` right-padded rows of 2..length random ids, and random labels."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(2, length + 1, (n,), generator=g)
    x = torch.randint(1, V, (n, length), generator=g)
    x[torch.arange(length) >= sizes[:, None]] = 0
    return x, torch.randint(0, 2, (n,), generator=g)


def train_on(student, teacher, objective, x, y, epochs, batch_size=8, **settings):
    """Fit ``student`` as a run does (online teacher for per-token features); the epoch records."""
    teacher.eval().requires_grad_(False)
    outputs = teacher_outputs(teacher, x, None, objective.teacher_taps, settings=CacheSettings(store=False))
    records = []
    options = {"epochs": epochs, "batch_size": batch_size, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0, "schedule": "constant", **settings}
    fit(student, Split(x, y), Split(x[:8], y[:8]), objective, TrainSettings(**options), seed=0, teacher=outputs, on_epoch=records.append)
    return records, outputs


# --- AttentionKL: the maths -------------------------------------------------------------------------


def rows(*r):
    return torch.tensor(r, dtype=torch.float64)


# Two sentences, one head, three positions. Sentence 0 has two tokens: key 2 is padding (probability
# 0 in every row) and its padded query row 2 still attends to the real keys, as in text_transformer.
TEACHER = torch.stack([rows([0.5, 0.5, 0], [0.9, 0.1, 0], [0.3, 0.7, 0]), rows([1, 0, 0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3])])[:, None]
STUDENT = torch.stack([rows([0.25, 0.75, 0], [0.5, 0.5, 0], [0.6, 0.4, 0]), rows([0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.5, 0.25, 0.25])])[:, None]


def test_attention_kl_golden_by_hand():
    # sentence 0, rows 0-1 (row 2 is padding): KL([.5,.5]‖[.25,.75]) = .5·ln 2 + .5·ln(2/3); KL([.9,.1]‖[.5,.5]) = .9·ln 1.8 + .1·ln .2
    s0 = (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + 0.9 * math.log(1.8) + 0.1 * math.log(0.2)) / 2
    # sentence 1: KL([1,0,0]‖[.5,.25,.25]) = ln 2 (0·log 0 = 0); equal rows 0; uniform vs [.5,.25,.25] = ⅓(ln ⅔ + 2 ln 4/3)
    s1 = (math.log(2) + 0 + (math.log(2 / 3) + 2 * math.log(4 / 3)) / 3) / 3
    value = AttentionKL()(STUDENT, TEACHER)
    assert value.item() == pytest.approx((s0 + s1) / 2, rel=1e-12)
    assert (s0 + s1) / 2 == pytest.approx(0.25294, abs=1e-5)  # the number itself, for a reader checking by hand


def test_attention_kl_is_zero_for_equal_maps_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    keep = torch.arange(7) < torch.tensor([7, 4, 1])[:, None]  # (B, L) real tokens
    scores = torch.randn(3, 2, 7, 7, generator=g, dtype=torch.float64).masked_fill(~keep[:, None, None, :], torch.finfo(torch.float64).min)
    probs = scores.softmax(-1)
    assert AttentionKL()(probs, probs).item() == 0.0
    other = torch.randn(3, 2, 7, 7, generator=g, dtype=torch.float64).masked_fill(~keep[:, None, None, :], torch.finfo(torch.float64).min).softmax(-1)
    assert AttentionKL()(other, probs).item() > 0


def test_gradient_reaches_only_the_student_and_not_its_padded_rows():
    _, s_grad, t_grad = student_and_teacher_grads(AttentionKL(), STUDENT, TEACHER)
    assert_no_teacher_grad(t_grad)
    assert torch.isfinite(s_grad).all()
    assert torch.count_nonzero(s_grad[0, :, 2]) == 0  # sentence 0's padded query row is left out
    assert torch.count_nonzero(s_grad[1]) > 0


def test_value_does_not_depend_on_the_padding_of_the_batch():
    """Extra padding columns (their query rows arbitrary, their keys 0) leave every sentence's value unchanged."""
    g = torch.Generator().manual_seed(1)

    def padded(p, extra):
        b, h, n, _ = p.shape
        out = torch.zeros(b, h, n + extra, n + extra, dtype=p.dtype)
        out[:, :, :n, :n] = p
        real = (p.sum(dim=(1, 2)) > 0)[:, None, None, :]  # (B, 1, 1, n): the keys some query attends to
        weights = torch.rand(b, h, extra, n, generator=g, dtype=p.dtype) * real
        out[:, :, n:, :n] = weights / weights.sum(-1, keepdim=True)  # padded queries attend to the real keys only
        return out

    torch.testing.assert_close(AttentionKL()(padded(STUDENT, 3), padded(TEACHER, 3)), AttentionKL()(STUDENT, TEACHER), rtol=1e-12, atol=0)


def test_zero_teacher_rows_are_ignored_and_student_zeros_stay_finite():
    teacher = TEACHER.clone()
    teacher[0, :, 2] = 0  # a TinyBERT-style zeroed padded query row
    assert AttentionKL()(STUDENT, teacher).item() == pytest.approx(AttentionKL()(STUDENT, TEACHER).item(), rel=1e-12)
    student = STUDENT.clone()
    student[1, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # the teacher's row 1 puts mass where the student has none
    student[1, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    value, s_grad, _ = student_and_teacher_grads(AttentionKL(), student.float(), TEACHER.float())
    assert torch.isfinite(value) and value.item() > 10 and torch.isfinite(s_grad).all()


def test_attention_kl_needs_equal_attention_maps():
    with pytest.raises(ValueError, match="same shape"):
        AttentionKL()(torch.rand(2, 2, 3, 3), torch.rand(2, 4, 3, 3))
    with pytest.raises(ValueError, match="attention probabilities"):
        AttentionKL()(torch.rand(2, 3, 3), torch.rand(2, 3, 3))
    assert isinstance(build_loss("AttentionKL"), AttentionKL)


# --- transformer → transformer: hidden states and attention maps -----------------------------------


def test_hidden_states_and_attention_maps_transfer_between_transformers():
    teacher, student = transformer(64, seed=1), transformer(32, seed=2)
    with torch.no_grad():  # a fresh init attends nearly uniformly; give the teacher peaked attention, as trained models have
        for layer in teacher.layers:
            layer.attn.qkv.weight[:128].mul_(8)
    x, y = token_data(64)
    terms = [
        TermSpec("FitNet", 1.0, student="layers.1"),
        TermSpec("AttentionKL", 1.0, student="layers.1.attn.probs"),
        TermSpec("CE", 0.1),
    ]
    objective = build_objective(terms, student, teacher, x[:8], n_data=len(x), seed=0)
    assert objective.names == ["fitnet@layers.1", "attentionkl@layers.1.attn.probs", "ce"]
    connector = objective.connectors["fitnet@layers.1"]
    assert isinstance(connector, nn.Linear) and (connector.in_features, connector.out_features) == (32, 64)  # TinyBERT's W_h
    assert set(objective.connectors) == {"fitnet@layers.1"}  # no connector on the attention maps
    assert set(objective.state_dict()) >= {"connectors.fitnet@layers/1.weight", "connectors.fitnet@layers/1.bias"}

    lengths = set()
    connector.register_forward_hook(lambda m, args, out: lengths.add(args[0].shape[1]))
    records, outputs = train_on(student, teacher, objective, x, y, epochs=5, lr=3e-3)
    assert outputs.info["kind"] == "online"  # per-token teacher features are computed with each batch
    assert len(lengths) > 2 and max(lengths) <= LENGTH  # batches cut to their own lengths, one connector for all
    fitnet = [r.terms["fitnet@layers.1"] for r in records]
    attention = [r.terms["attentionkl@layers.1.attn.probs"] for r in records]
    assert all(math.isfinite(v) for v in fitnet + attention)
    assert fitnet[-1] < 0.5 * fitnet[0] and attention[-1] < 0.95 * attention[0]  # measured: 0.011 → 0.004, 0.61 → 0.53


def test_length_axes_tell_token_features_from_sequence_maps_and_vectors():
    x, _ = token_data(8)
    axes = length_axes(transformer(32), x, ["layers.1", "layers.1.attn.probs", "features"])
    assert axes == {"logits": (), "layers.1": (1,), "layers.1.attn.probs": (2, 3), "features": ()}
    cnn = build_model("textcnn", input_shape=(LENGTH,), num_classes=2, vocab_size=V, vocab="teacher", embed_dim=16, maps=8, seed=0)
    assert length_axes(cnn, x, ["convs.0"])["convs.0"] == (2,)  # (B, C, L + w − 1): channels first


def test_connectors_that_cannot_work_at_every_length_are_errors_naming_the_term():
    x, _ = token_data(8)
    teacher = transformer(64)
    with pytest.raises(ValueError, match=r"term attentionkl@layers.1.attn.probs: attention maps with 2 heads \(student\) and 4 heads"):
        build_objective([TermSpec("AttentionKL", student="layers.1.attn.probs")], transformer(32, heads=2), teacher, x, n_data=8, seed=0)
    with pytest.raises(ValueError, match=r"term fitnet@layers.1: hidden states .* different numbers of positions"):
        build_objective([TermSpec("FitNet", student="layers.1")], transformer(32, pooling="cls"), teacher, x, n_data=8, seed=0)
    with pytest.raises(ValueError, match=r"term fitnet@layers.1>layers.1.attn.probs: .*\(hidden states \(L, D\)\).*\(attention maps \(H, L, L\)\) are different kinds"):
        build_objective([TermSpec("FitNet", student="layers.1", teacher="layers.1.attn.probs")], transformer(32), teacher, x, n_data=8, seed=0)


@pytest.mark.parametrize(
    ("s", "t", "axes", "other_length"),
    [
        ((2, 5, 32), (2, 5, 64), (1,), (2, 9, 32)),  # hidden states: Linear on D
        ((2, 8, 18), (2, 16, 18), (2,), (2, 8, 25)),  # TextCNN maps of one filter width: 1×1 conv on C
        ((2, 24), (2, 64), (), (2, 24)),  # sentence vectors
        ((2, 4, 6, 6), (2, 4, 6, 6), (2, 3), (2, 4, 3, 3)),  # attention maps, equal heads: nothing to do
    ],
)
def test_token_connectors_map_the_feature_axis_at_any_length(s, t, axes, other_length):
    connector = build_token_connector(s, t, axes, axes)
    assert connector(torch.randn(s)).shape == t
    assert connector(torch.randn(other_length)).shape[-1 if axes == (1,) else 1] == t[-1 if axes == (1,) else 1]
    assert isinstance(connector, nn.Identity) == (s == t)


def test_token_connectors_refuse_what_no_fixed_module_can_map():
    with pytest.raises(ValueError, match="different lengths"):
        build_token_connector((2, 8, 18), (2, 16, 20), (2,), (2,))  # TextCNN maps of different filter widths
    with pytest.raises(ValueError, match="different kinds"):
        build_token_connector((2, 5, 32), (2, 64), (1,), ())


def test_stage_groups_on_text_models_are_errors_that_say_what_to_tap():
    x, _ = token_data(8)
    with pytest.raises(KeyError, match=r"term 0 \(FitNet\): the tap group 'middle_stage' .* 'layers.N' hidden states"):
        build_objective([TermSpec("FitNet", student="middle_stage")], transformer(32), transformer(64), x, n_data=8, seed=0)


def test_tinybert_attention_mse_is_fitnet_on_the_attention_maps():
    x, _ = token_data(8)
    student, teacher = transformer(32, seed=1), transformer(64, seed=2)
    objective = build_objective([FitNet().between("layers.0.attn.probs") * 1.0], student, teacher, x, n_data=8, seed=0)
    assert not objective.connectors  # equal head counts: the maps compare as they are


# --- MiniLM → text_transformer ----------------------------------------------------------------------

SENTENCES = [
    "a gripping , beautifully acted film .",
    "dull .",
    "the plot goes nowhere and the jokes fall flat , but the cast is charming .",
    "an utterly delightful surprise .",
    "two hours i will never get back .",
    "the music is lovely and the ending moved me to tears .",
    "clumsy , tedious and far too long .",
    "a small film with a big heart .",
]


def test_minilm_hidden_states_teach_a_transformer_student_through_a_linear_connector():
    from distil.data.text.tokenizer import load_tokenizer
    from distil.pretrained import pretrained_folder

    x = load_tokenizer("minilm", 32).encode(SENTENCES).ids
    y = torch.tensor([1, 0, 0, 1, 0, 1, 0, 1])
    teacher = build_model("minilm", input_shape=(32,), num_classes=2, vocab_size=30522, tokenizer_dir=str(pretrained_folder("minilm")), train_layers=0, seed=0)
    student = build_model(
        "text_transformer", input_shape=(32,), num_classes=2, vocab_size=30522, token_counts=torch.bincount(x.flatten(), minlength=30522), min_count=1,
        width=32, depth=2, heads=4, seed=0,
    )  # fmt: skip
    objective = build_objective([TermSpec("FitNet", 1.0, student="layers.1", teacher="backbone.encoder.layer.5")], student, teacher, x, n_data=8, seed=0)
    connector = objective.connectors["fitnet@layers.1>backbone.encoder.layer.5"]
    assert isinstance(connector, nn.Linear) and (connector.in_features, connector.out_features) == (32, 384)
    records, _ = train_on(student, teacher, objective, x, y, epochs=4, batch_size=4)
    values = [r.terms["fitnet@layers.1>backbone.encoder.layer.5"] for r in records]
    assert all(math.isfinite(v) for v in values) and values[-1] < values[0]


# --- CRD on sentence vectors ------------------------------------------------------------------------


def test_crd_preset_trains_on_text_models_with_a_bank_row_per_sentence():
    teacher = transformer(64, seed=1)
    student = build_model("boe", input_shape=(LENGTH,), num_classes=2, vocab_size=V, vocab="teacher", embed_dim=24, hidden=0, seed=2)
    x, y = token_data(48)
    objective = build_objective(list(METHODS["crd"].terms), student, teacher, x[:8], n_data=len(x), seed=0)
    crd = next(t.loss for t in objective.terms if t.name == "crd")
    assert [t.student for t in objective.terms if t.name == "crd"] == ["fc:input"]  # the embedding group: input of the last Linear
    assert crd.memory_s.shape == (len(x), 128) and crd.memory_t.shape == (len(x), 128)
    assert (crd.s_dim, crd.t_dim) == (24, 64)
    before = crd.memory_s.clone()
    records, _ = train_on(student, teacher, objective, x, y, epochs=1)
    assert math.isfinite(records[0].loss) and math.isfinite(records[0].terms["crd@fc:input"])
    assert not torch.equal(crd.memory_s, before)  # every row written during the epoch


# --- from YAML ----------------------------------------------------------------------------------


def text_config(tmp_path, student_kwargs):
    csv = tmp_path / "train.csv"
    words = ["good", "bad", "fine", "dull", "great", "awful", "film", "plot", "cast", "music"]
    csv.write_text("text,label\n" + "".join(f'"the {words[i % 10]} {words[(i * 7) % 10]} was {words[(i * 3) % 10]}",{i % 2}\n' for i in range(40)))
    tt = {"width": 64, "depth": 2, "heads": 4}
    return validate_config(
        {
            "data": {"name": "text_csv", "path": str(csv), "val_size": 0.2, "max_length": 16},
            "teacher": {"arch": "text_transformer", "kwargs": {**tt, "min_count": 1}, "epochs": 1},
            "student": {"arch": "text_transformer", "kwargs": {**tt, "width": 32, "min_count": 1, **student_kwargs}, "epochs": 1},
            "distill": {
                "method": "kd",
                "terms": [
                    {"loss": "FitNet", "weight": 10, "student": "layers.1"},
                    {"loss": "AttentionKL", "weight": 1, "student": "layers.1.attn.probs", "teacher": "layers.1.attn.probs"},
                ],
            },
        }
    )


def test_yaml_terms_on_transformer_taps_build_the_objective_a_run_trains(tmp_path, monkeypatch):
    from distil.data import load_dataset

    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tmp_path / "data-cache"))
    config = text_config(tmp_path, {})
    assert [(s.loss, s.student) for s in config.distill.term_specs()] == [
        ("KD", "logits"),
        ("CE", "logits"),
        ("FitNet", "layers.1"),
        ("AttentionKL", "layers.1.attn.probs"),
    ]
    data = load_dataset("text_csv", path=config.data.path, val_size=0.2, max_length=16)
    session = RunSession(config, tmp_path / "out")
    teacher, student = session.build(config.teacher, data), session.build(config.student, data)
    objective = session.objective(student, teacher, data)
    assert objective.names == ["kd", "ce", "fitnet@layers.1", "attentionkl@layers.1.attn.probs"]
    assert isinstance(objective.connectors["fitnet@layers.1"], nn.Linear)

    # a student with other head counts is a ConfigError naming the method and the term, before any training
    narrow = session.build(text_config(tmp_path, {"heads": 2}).student, data)
    with pytest.raises(ConfigError, match=r"distill \(method 'kd'\): term attentionkl@layers.1.attn.probs: attention maps with 2 heads"):
        session.objective(narrow, teacher, data)
