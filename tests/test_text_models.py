"""Text models: the students (bilstm, lstm, textcnn, boe, text_transformer) and the Hugging Face teacher.

Properties (padding never changes logits, vocab "data" maps rare ids to one UNK row), goldens (PCA by
hand, the real MiniLM's embeddings against a direct SVD, the teacher against plain transformers on
unpadded sentences), what trains under train_layers, partial weights, and the errors.
"""

import math
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from distil.engine.taps import Taps
from distil.errors import ModelError
from distil.models import MODELS, build_model, count_parameters, register_model
from distil.models.registry import ModelEntry, call_factory
from distil.models.text_embedding import pca_rows
from distil.pretrained import pretrained_folder
from distil.weights import is_partial, load_weights, read_state_dict, save_trainable, save_weights

STUDENTS = ["bilstm", "lstm", "textcnn", "boe", "text_transformer"]
VOCAB = 30522  # MiniLM's tokenizer
SHAPE = (32,)  # the data's padded length


def mr_like_counts(seed=0, used=16000):
    """Token counts like a small corpus's: ``used`` ids occur, Zipf-ish, ~8k of them at least twice."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(VOCAB, dtype=torch.int64)
    ids = torch.randperm(VOCAB - 1, generator=g)[:used] + 1
    counts[ids] = (1.0 / torch.rand(used, generator=g)).floor().long().clamp(max=10_000)
    counts[[101, 102]] = 4000  # [CLS], [SEP]: once per sentence
    return counts


COUNTS = mr_like_counts()


def student(name, **kwargs):
    kwargs.setdefault("token_counts", COUNTS)
    return build_model(name, input_shape=SHAPE, num_classes=3, vocab_size=VOCAB, seed=0, **kwargs)


def token_batch(lengths, seed=0, ids=None):
    """Right-padded ids with the given row lengths; tokens drawn from ``ids`` (default: ids the counts keep)."""
    g = torch.Generator().manual_seed(seed)
    pool = (COUNTS >= 2).nonzero().flatten() if ids is None else torch.as_tensor(ids)
    x = torch.zeros(len(lengths), max(lengths), dtype=torch.int64)
    for i, n in enumerate(lengths):
        x[i, :n] = pool[torch.randint(len(pool), (n,), generator=g)]
    return x


def padded(x, extra):
    return torch.cat([x, torch.zeros(len(x), extra, dtype=x.dtype)], dim=1)


# --- students ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STUDENTS)
def test_students_give_logits_and_ignore_padding(name):
    model = student(name).eval()
    x = token_batch([7, 1, 12, 3])
    with torch.no_grad():
        logits = model(x)
        longer = model(padded(x, 9))
    assert logits.shape == (4, 3) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.testing.assert_close(longer, logits, rtol=0, atol=1e-6)
    # A row's logits are those it gets alone, unpadded: other rows' lengths don't matter.
    with torch.no_grad():
        alone = model(x[1:2, :1])
    torch.testing.assert_close(alone, logits[1:2], rtol=0, atol=1e-6)


def test_bilstm_sentence_vector_is_that_of_a_packed_bidirectional_lstm():
    model = student("bilstm", layers=2, hidden_size=8, embed_dim=6).eval()
    reference = nn.LSTM(6, 8, num_layers=2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{i}").copy_(getattr(layer.fwd, f"{name}_l0"))
                getattr(reference, f"{name}_l{i}_reverse").copy_(getattr(layer.bwd, f"{name}_l0"))
    x = token_batch([7, 1, 12, 3])
    lengths = (x != 0).sum(1)
    with torch.no_grad(), Taps(model, ["features"]) as taps:
        features = taps.forward(x)["features"]
        packed = nn.utils.rnn.pack_padded_sequence(model.embedding(x), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = reference(packed)
    torch.testing.assert_close(features, torch.cat([h[-2], h[-1]], dim=1), rtol=1e-5, atol=1e-6)


def test_transformer_with_cls_pooling_ignores_padding_too():
    model = student("text_transformer", pooling="cls", depth=1).eval()
    x = token_batch([5, 2, 9])
    with torch.no_grad():
        torch.testing.assert_close(model(padded(x, 6)), model(x), rtol=0, atol=1e-6)


def test_a_row_of_padding_gives_finite_logits():
    x = torch.zeros(2, 4, dtype=torch.int64)
    x[0, :2] = torch.tensor([2023, 2003])
    for name in STUDENTS:
        assert torch.isfinite(student(name).eval()(x)).all(), name


def test_student_parameter_counts_are_the_papers_layers_plus_the_kept_vocabulary():
    rows = int((COUNTS[1:] >= 2).sum()) + 2  # kept ids, the padding row and the UNK row
    lstm_layer = lambda inp, h: 4 * h * (inp + h) + 8 * h  # W_ih, W_hh, two biases
    assert count_parameters(student("bilstm")) == rows * 300 + 2 * lstm_layer(300, 150) + (300 * 200 + 200) + (200 * 3 + 3)
    assert count_parameters(student("textcnn")) == rows * 300 + sum(100 * 300 * w + 100 for w in (3, 4, 5)) + (300 * 3 + 3)
    assert count_parameters(student("boe")) == rows * 300 + 300 * 3 + 3
    assert count_parameters(student("boe", hidden=64)) == rows * 300 + (300 * 64 + 64) + (64 * 3 + 3)


def test_vocab_data_maps_rare_and_unseen_ids_to_one_unk_row_and_shrinks_the_model():
    counts = torch.zeros(VOCAB, dtype=torch.int64)
    counts[[0, 5, 6, 7, 2023]] = torch.tensor([50, 2, 9, 1, 3])  # id 7 is rare (1 < min_count 2); 0 is padding
    model = student("boe", token_counts=counts).eval()
    index = model.embedding.index
    assert model.embedding.weight.shape == (2 + 3, 300)  # padding, UNK, ids 5, 6, 2023
    assert index[[0, 5, 6, 2023, 7, 9999]].tolist() == [0, 2, 3, 4, 1, 1]
    assert torch.equal(model.embedding.weight[0], torch.zeros(300))
    with torch.no_grad():
        rare, unseen = model(torch.tensor([[5, 7, 2023]])), model(torch.tensor([[5, 9999, 2023]]))
    assert torch.equal(rare, unseen)
    full = student("boe", vocab="teacher", token_counts=None)
    assert count_parameters(full) - count_parameters(model) == (VOCAB - 5) * 300
    assert count_parameters(student("boe", token_counts=counts, min_count=3)) == count_parameters(model) - 300  # id 5 joins UNK


def test_the_vocabulary_travels_with_the_weights(tmp_path):
    model = student("bilstm")
    save_weights(model, tmp_path / "s.safetensors")
    assert torch.equal(read_state_dict(tmp_path / "s.safetensors")["embedding.index"], model.embedding.index)
    other = student("bilstm", token_counts=mr_like_counts(seed=1))
    with pytest.raises(ModelError, match="shape mismatch"):  # a different vocabulary does not fit
        load_weights(other, tmp_path / "s.safetensors")


def test_frozen_embedding_gets_no_gradient():
    model = student("textcnn", freeze_embedding=True)
    model(token_batch([4, 6])).sum().backward()
    assert model.embedding.weight.grad is None and model.fc.weight.grad is not None


def test_transformer_taps_hidden_states_and_attention_probabilities():
    model = student("text_transformer", depth=2, heads=4, width=32).eval()
    x = token_batch([5, 2])
    with torch.no_grad(), Taps(model, ["layers.1", "layers.0.attn.probs", "layers.1.attn.probs", "features"]) as taps:
        out = taps.forward(x)
    assert out["layers.1"].shape == (2, 5, 32) and out["features"].shape == (2, 32)
    probs = out["layers.1.attn.probs"]
    assert probs.shape == (2, 4, 5, 5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 5))
    assert torch.equal(probs[1, :, :, 2:], torch.zeros(4, 5, 3))  # the padded keys of row 1 get nothing


def test_text_models_need_text_data():
    for name in [*STUDENTS, "minilm"]:
        with pytest.raises(ModelError, match="must be text"):
            build_model(name, input_shape=(1, 28, 28), num_classes=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vocab": "words"}, "vocab must be one of data, teacher"),
        ({"embedding_init": "glove"}, "embedding_init must be one of random, teacher"),
        ({"token_counts": None}, "no token_counts; use vocab: teacher"),
        ({"token_counts": torch.zeros(5, dtype=torch.int64)}, r"token_counts must be an integer tensor of shape \(30522,\)"),
        ({"embedding_init": "teacher"}, "names no tokenizer folder"),
        ({"min_count": 0}, "min_count must be a positive integer"),
    ],
)
def test_embedding_arguments_are_checked(kwargs, match):
    with pytest.raises(ModelError, match=match):
        student("bilstm", **kwargs)


# --- the registry passes the text arguments only to factories that name them -----------------------


def test_text_data_arguments_reach_only_factories_that_name_them():
    seen = {}

    def text_factory(*, input_shape, num_classes, vocab_size, tokenizer_dir=None):
        seen.update(vocab_size=vocab_size, tokenizer_dir=tokenizer_dir)
        return nn.Embedding(vocab_size, num_classes)

    def any_factory(**kwargs):
        seen["any"] = sorted(kwargs)
        return nn.Linear(1, 1)

    register_model("test_text")(text_factory)
    try:
        assert MODELS["test_text"].text and not MODELS["mlp"].text
        build_model(
            "test_text", input_shape=(8,), num_classes=2, vocab_size=11, token_counts=torch.ones(11, dtype=torch.int64), tokenizer_dir="/t"
        )
        assert seen == {"vocab_size": 11, "tokenizer_dir": "/t"}
        MODELS["test_any"] = ModelEntry(any_factory, "")
        build_model("test_any", input_shape=(8,), num_classes=2, vocab_size=11)
        assert seen["any"] == ["input_shape", "num_classes"]  # **kwargs does not take them
        build_model("mlp", input_shape=(8,), num_classes=2, vocab_size=11)  # image factories never see them
        with pytest.raises(ModelError, match="vocab_size comes from the dataset"):
            call_factory("test_text", text_factory, input_shape=(8,), num_classes=2, kwargs={"vocab_size": 3})
    finally:
        MODELS.pop("test_text", None)
        MODELS.pop("test_any", None)


# --- teacher-initialised embeddings -----------------------------------------------------------------


def test_pca_rows_by_hand():
    # Four points on the diagonal: mean (1.5, 1.5), first component (1, 1)/√2, projections ±1.5√2, ±0.5√2.
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    expected = torch.tensor([[-1.5], [-0.5], [0.5], [1.5]]) * math.sqrt(2)
    torch.testing.assert_close(pca_rows(points, 1), expected)
    torch.testing.assert_close(pca_rows(-points, 1), -expected)  # the component's sign is fixed, (1, 1)/√2 again
    torch.testing.assert_close(pca_rows(points, 3), torch.cat([points, torch.zeros(4, 1)], 1))  # wider: copied, padded


@pytest.fixture(scope="module")
def minilm_dir():
    return pretrained_folder("minilm")


@pytest.fixture(scope="module")
def minilm_embeddings(minilm_dir):
    with safe_open(str(minilm_dir / "model.safetensors"), "pt") as f:
        return f.get_tensor("embeddings.word_embeddings.weight")


def test_teacher_initialised_embedding_is_the_pca_of_minilms_embeddings(minilm_dir, minilm_embeddings):
    dim = 48
    ids = torch.tensor([101, 102, 2023, 2204, 3185])  # [CLS], [SEP], "this", "good", "movie"
    counts = COUNTS.clone()
    counts[ids] = 5
    model = student("boe", embed_dim=dim, embedding_init="teacher", tokenizer_dir=str(minilm_dir), token_counts=counts)
    # Direct computation: the principal axes are the top eigenvectors of the covariance (numpy's eigh),
    # each one's sign fixed the same way (largest-magnitude entry positive).
    e = minilm_embeddings.double().numpy()
    centred = e - e.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    components = vectors[:, ::-1][:, :dim].T
    components = components * np.sign(components[np.arange(dim), np.abs(components).argmax(1)])[:, None]
    projected = torch.from_numpy(centred @ components.T).float()
    rows = model.embedding.index[ids]
    torch.testing.assert_close(model.embedding.weight[rows].detach(), projected[ids], rtol=1e-4, atol=1e-5)
    rare = (model.embedding.index == 1).nonzero().flatten()
    torch.testing.assert_close(model.embedding.weight[1].detach(), projected[rare].mean(0), rtol=1e-4, atol=1e-5)
    assert torch.equal(model.embedding.weight[0].detach(), torch.zeros(dim))


def test_teacher_initialised_embedding_wider_than_the_teacher_is_a_copy(minilm_dir, minilm_embeddings):
    model = student(
        "bilstm", embed_dim=400, vocab="teacher", embedding_init="teacher", tokenizer_dir=str(minilm_dir), freeze_embedding=True
    )
    weight = model.embedding.weight.detach()
    assert torch.equal(weight[1:, :384], minilm_embeddings[1:]) and torch.equal(weight[:, 384:], torch.zeros(VOCAB, 16))
    assert not model.embedding.weight.requires_grad


# --- the Hugging Face teacher -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(minilm_dir):
    """Build MiniLM teachers (the first build imports transformers, ~3 s; then ~0.1 s each)."""

    def build(seed=0, num_classes=2, **kwargs):
        return build_model(
            "minilm", input_shape=(64,), num_classes=num_classes, vocab_size=VOCAB, tokenizer_dir=str(minilm_dir), seed=seed, **kwargs
        )

    return build


@pytest.fixture(scope="module")
def sentences(minilm_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(64)
    texts = [
        "a gripping , beautifully acted film .",
        "dull .",
        "the plot goes nowhere and the jokes fall flat , but the cast is charming .",
    ]
    return [torch.tensor(e.ids) for e in tok.encode_batch(texts)]


def test_teacher_logits_are_the_plain_encoders_mean_pooled_output_through_the_head(teacher, sentences, minilm_dir):
    from transformers import AutoModel

    model = teacher().eval()
    batch = nn.utils.rnn.pad_sequence(sentences, batch_first=True)
    encoder = AutoModel.from_pretrained(minilm_dir, local_files_only=True).eval()
    with torch.no_grad():
        logits = model(batch)
        for i, ids in enumerate(sentences):  # one sentence at a time, no padding, no mask
            pooled = encoder(input_ids=ids[None]).last_hidden_state.mean(1)
            torch.testing.assert_close(logits[i : i + 1], model.fc(pooled), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(padded(batch, 5)), logits, rtol=0, atol=1e-5)


def test_teacher_head_comes_from_the_seed(teacher):
    a, b, c = teacher(seed=3), teacher(seed=3), teacher(seed=4)
    assert torch.equal(a.fc.weight, b.fc.weight) and not torch.equal(a.fc.weight, c.fc.weight)
    assert torch.equal(a.backbone.embeddings.word_embeddings.weight, c.backbone.embeddings.word_embeddings.weight)
    assert a.fc.weight.std().item() == pytest.approx(0.02, rel=0.2)  # BERT's initializer_range


def test_teacher_hidden_states_are_tapped_by_module_path(teacher, sentences):
    model = teacher().eval()
    taps = ["backbone.embeddings", "backbone.encoder.layer.5", "backbone.encoder.layer.5.output", "features", "fc:input"]
    with torch.no_grad(), Taps(model, taps) as t:
        out = t.forward(nn.utils.rnn.pad_sequence(sentences, batch_first=True))
    length = max(len(s) for s in sentences)
    assert out["backbone.encoder.layer.5"].shape == (3, length, 384) and out["features"].shape == (3, 384)
    assert torch.equal(out["backbone.encoder.layer.5"], out["backbone.encoder.layer.5.output"])
    assert torch.equal(out["features"], out["fc:input"])  # eval: dropout is the identity


@pytest.mark.parametrize("train_layers", [0, 1])
def test_gradients_reach_only_what_train_layers_trains(teacher, sentences, train_layers):
    model = teacher(train_layers=train_layers)
    model(nn.utils.rnn.pad_sequence(sentences, batch_first=True)).sum().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {n for n, p in model.named_parameters() if p.requires_grad}
    top = {n for n, _ in model.named_parameters() if n.startswith("backbone.encoder.layer.5.")}
    assert trained == {"fc.weight", "fc.bias"} | (top if train_layers == 1 else set())
    assert len(top) == 16 and "backbone.pooler.dense.weight" not in dict(model.named_parameters())


def test_frozen_layers_stay_in_eval_mode_so_their_features_are_deterministic(teacher, sentences):
    model = teacher(train_layers=1).train()
    assert not model.backbone.embeddings.training and not model.backbone.encoder.layer[4].training
    assert model.backbone.encoder.layer[5].training and model.dropout.training
    batch = nn.utils.rnn.pad_sequence(sentences, batch_first=True)
    with Taps(model, ["backbone.encoder.layer.4", "backbone.encoder.layer.5"]) as t:
        first, second = t.forward(batch), t.forward(batch)
    assert torch.equal(first["backbone.encoder.layer.4"], second["backbone.encoder.layer.4"])
    assert not torch.equal(first["backbone.encoder.layer.5"], second["backbone.encoder.layer.5"])  # dropout in the trained layer
    frozen = teacher(train_layers=0).train()
    assert not frozen.backbone.training and frozen.fc.training


def test_full_weights_reload_into_a_fresh_teacher(teacher, sentences, tmp_path):
    model = teacher(seed=1).eval()
    with torch.no_grad():
        model.backbone.encoder.layer[2].output.dense.weight.mul_(1.1)
    save_weights(model, tmp_path / "t.safetensors")
    fresh = load_weights(teacher(seed=2), tmp_path / "t.safetensors").eval()
    batch = nn.utils.rnn.pad_sequence(sentences, batch_first=True)
    with torch.no_grad():
        assert torch.equal(fresh(batch), model(batch))


def test_partial_weights_round_trip_onto_a_fresh_teacher(teacher, sentences, tmp_path):
    model = teacher(seed=1, train_layers=1).eval()
    with torch.no_grad():  # stands for fine-tuning: change what trains
        model.backbone.encoder.layer[5].output.dense.weight.mul_(1.1)
        model.fc.bias.add_(0.5)
    path = save_trainable(model, tmp_path / "top.safetensors")
    assert is_partial(path)
    saved = read_state_dict(path)
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(v.numel() for v in saved.values()) < count_parameters(model) / 10
    fresh = load_weights(teacher(seed=2, train_layers=1), path).eval()
    batch = nn.utils.rnn.pad_sequence(sentences, batch_first=True)
    with torch.no_grad():
        assert torch.equal(fresh(batch), model(batch))
    # A teacher that trains everything needs every key: the message lists what the file lacks.
    with pytest.raises(ModelError, match=r"missing in the partial file, and not frozen in the model: backbone\.embeddings.* \(85 in all\)"):
        load_weights(teacher(train_layers=None), path)
    with pytest.raises(ModelError, match="not frozen in the model"):  # frozen in the file's model, trained in this one
        load_weights(teacher(train_layers=2), path)


def test_a_sequence_classification_folder_is_used_as_it_is(teacher, tmp_path, minilm_dir, sentences):
    source = teacher(num_classes=4).backbone  # save a BertForSequenceClassification with 4 labels
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(minilm_dir, local_files_only=True, num_labels=4, architectures=["BertForSequenceClassification"])
    classifier = AutoModelForSequenceClassification.from_config(config)
    classifier.bert.load_state_dict(source.state_dict(), strict=False)
    classifier.save_pretrained(tmp_path)
    model = build_model(f"hf:{tmp_path}", input_shape=(64,), num_classes=4, vocab_size=VOCAB, train_layers=0).eval()
    batch = nn.utils.rnn.pad_sequence(sentences, batch_first=True)
    with torch.no_grad():
        expected = classifier.eval()(input_ids=batch, attention_mask=(batch != 0).long()).logits
        torch.testing.assert_close(model(batch), expected, rtol=1e-4, atol=1e-5)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"backbone.classifier.weight", "backbone.classifier.bias"}
    other = build_model(f"hf:{tmp_path}", input_shape=(64,), num_classes=2, vocab_size=VOCAB)  # other label count: new head
    assert other.fc.out_features == 2


def test_bad_teacher_folders_are_model_errors_naming_the_folder(tmp_path, minilm_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "typeless").mkdir()
    (tmp_path / "typeless" / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "weightless").mkdir()
    (tmp_path / "weightless" / "config.json").write_text((minilm_dir / "config.json").read_text())
    cases = {
        "missing": "is not a folder",
        "empty": "has no config.json",
        "typeless": "could not read the config.json .*model_type",
        "weightless": "could not read the weights .*model.safetensors",
    }
    for folder, match in cases.items():
        with pytest.raises(ModelError, match=match) as err:
            build_model(f"hf:{tmp_path / folder}", input_shape=(8,), num_classes=2, vocab_size=VOCAB)
        assert str(tmp_path / folder) in str(err.value) and "Hugging Face model folder" in str(err.value)


def test_teacher_arguments_are_checked(teacher, tmp_path):
    with pytest.raises(ModelError, match="train_layers 7 exceeds its 6 encoder layers"):
        teacher(train_layers=7)
    with pytest.raises(ModelError, match="pooling must be one of mean, cls"):
        teacher(pooling="max")
    with pytest.raises(ModelError, match="vocab_size 40000 exceeds the model's 30522"):
        build_model("minilm", input_shape=(8,), num_classes=2, vocab_size=40000)
    with pytest.raises(ModelError, match="600 tokens long, more than its 512 positions"):
        build_model("minilm", input_shape=(600,), num_classes=2, vocab_size=VOCAB)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenized with .*differs from the model's"):
        build_model("minilm", input_shape=(8,), num_classes=2, vocab_size=VOCAB, tokenizer_dir=str(tmp_path))


def test_a_missing_transformers_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an uninstalled package looks like to import
    with pytest.raises(ModelError, match=r"pip install 'distil\[text\]'"):
        build_model("minilm", input_shape=(8,), num_classes=2, vocab_size=VOCAB)
