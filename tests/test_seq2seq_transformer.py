"""The Transformer encoder–decoder: its KV cache, masks, decoders, ONNX export and a translation run with it."""

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from strategy_helpers import run_cli, run_cli_with
from test_translation_run import TINY

from distil.compress.seq2seq_export import OnnxSeq2Seq, export_seq2seq, seq2seq_parity
from distil.config.translation import ARCHS, Seq2SeqConfig
from distil.models.seq2seq import SEQ2SEQ, LstmSeq2Seq, TransformerSeq2Seq
from distil.models.seq2seq_decode import BOS_ID, EOS_ID, beam_search, decode, greedy, next_token_logits
from distil.models.seq2seq_encoded import reorder_state
from distil.models.seq2seq_transformer import sinusoids
from distil.serve.translation import create_translation_app, load_translators


def transformer(seed=0, tie=False, tgt_vocab=22, dropout=0.0):
    torch.manual_seed(seed)
    return TransformerSeq2Seq(20, tgt_vocab, d_model=16, heads=2, layers=2, decoder_layers=2, ffn=32, dropout=dropout, tie_embeddings=tie).eval()


SRC = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11], [12, 13, 0, 0, 0]])
TGT = torch.tensor([[BOS_ID, 5, 6, 7, 8, 9], [BOS_ID, 9, 9, 4, 0, 0], [BOS_ID, 15, 16, 17, 18, 19]])


def test_sinusoids_are_vaswanis_formula():
    pe = sinusoids(torch.tensor([0, 3]), 4)
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0]
    expected = [torch.tensor(3.0).sin(), torch.tensor(3.0).cos(), torch.tensor(3 / 100).sin(), torch.tensor(3 / 100).cos()]  # 10000^(2/4) = 100
    assert torch.allclose(pe[1], torch.stack(expected), atol=1e-6)


def decode_step_by_step(model, src, tgt):
    """The logits of ``tgt`` decoded one token at a time with the model's state, and the final state."""
    enc, state, steps = model.encode(src), None, []
    for t in range(tgt.shape[1]):
        logits, state = model.decode(tgt[:, t : t + 1], enc, state)
        steps.append(logits)
    return torch.cat(steps, 1), state


@pytest.mark.parametrize("tie", [False, True])
@torch.no_grad()
def test_decoding_step_by_step_with_the_cache_gives_the_teacher_forced_logits(tie):
    m = transformer(tie=tie)
    full = m(SRC, TGT)
    stepped, state = decode_step_by_step(m, SRC, TGT)
    enc = m.encode(SRC)
    assert torch.allclose(stepped, full, atol=1e-5)
    assert state[0].shape == (2, 3, 2, 6, 8) and state[1].shape == state[0].shape  # (layers, B, heads, P, d/heads)
    two, state2 = m.decode(TGT[:, 2:], enc, m.decode(TGT[:, :2], enc)[1])  # several tokens after a cached prefix
    assert torch.allclose(two, full[:, 2:], atol=1e-5) and torch.allclose(state2[0], state[0], atol=1e-5)
    if tie:
        assert m.out is None and "out.weight" not in m.state_dict()


@torch.no_grad()
def test_a_later_target_token_changes_no_earlier_position():
    m = transformer()
    changed = TGT.clone()
    changed[:, 3] = 17
    a, b = m(SRC, TGT), m(SRC, changed)
    assert torch.equal(a[:, :3], b[:, :3])
    assert (a[:, 3:] - b[:, 3:]).abs().amax() > 1e-3


@torch.no_grad()
def test_source_padding_changes_nothing():
    m = transformer()
    batched = m(SRC, TGT)
    for i in range(len(SRC)):
        n = int((SRC[i] != 0).sum())
        assert torch.allclose(m(SRC[i : i + 1, :n], TGT[i : i + 1]), batched[i : i + 1], atol=1e-5)
    wider = torch.nn.functional.pad(SRC, (0, 4))  # more padding still changes nothing
    assert torch.allclose(m(wider, TGT), batched, atol=1e-5)


def test_attention_is_scaled_dot_product_attention_and_dropout_is_off_in_eval():
    """Attention against torch's reference formula (softmax(QKᵀ/√d_k + mask) V per head, then the
    output projection), with a padding mask; a model with dropout gives the same logits twice in eval."""
    from distil.models.seq2seq_transformer import Attention

    torch.manual_seed(0)
    attn = Attention(16, 4, dropout=0.0).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]]).view(2, 1, 1, 5)
    keys, values = attn.keys_values(memory)
    q = attn.query(x).view(2, 3, 4, 4).transpose(1, 2)
    reference = attn.proj(F.scaled_dot_product_attention(q, keys, values, attn_mask=mask).transpose(1, 2).reshape(2, 3, 16))
    assert torch.allclose(attn(x, keys, values, mask), reference, atol=1e-6)
    m = transformer(dropout=0.5).eval()
    assert torch.equal(m(SRC, TGT), m(SRC, TGT))
    assert not torch.equal(m.train()(SRC, TGT), m(SRC, TGT))  # and on in training


def test_batched_beam_search_equals_each_sentence_alone():
    m = transformer()
    batched = decode(m, SRC, beam=3, batch_size=2)
    for i in range(len(SRC)):
        alone = decode(m, SRC[i : i + 1, : int((SRC[i] != 0).sum())], beam=3)
        assert batched[i, : alone.shape[1]].tolist() == alone[0].tolist()


@torch.no_grad()
def _best_by_enumeration(m, src, steps):
    """The likeliest output of at most ``steps`` tokens (``[EOS]`` only last), by scoring every one."""
    vocab = m(src, torch.tensor([[BOS_ID]])).shape[-1]
    tokens = [t for t in range(vocab) if t not in (0, BOS_ID)]
    candidates = [list(c) for n in range(1, steps + 1) for c in itertools.product(tokens, repeat=n) if EOS_ID not in c[:-1] and (n == steps or c[-1] == EOS_ID)]
    best, best_score = None, -float("inf")
    for c in candidates:
        logits = m(src, torch.tensor([[BOS_ID, *c[:-1]]]))
        logp = torch.stack([torch.log_softmax(next_token_logits(logits[:, : t + 1]), -1)[0, c[t]] for t in range(len(c))]).sum()
        if float(logp) > best_score:
            best, best_score = c, float(logp)
    return best


@pytest.mark.parametrize(("arch", "seed", "scale"), [("transformer", 2, 3.0), ("lstm_attention", 0, 2.0)])
def test_a_beam_as_wide_as_every_prefix_finds_the_likeliest_output(arch, seed, scale):
    """Beam search with K ≥ |prefixes| is exhaustive: right only if each hypothesis keeps its own state (the cache reordered with it)."""
    torch.manual_seed(seed)
    m = transformer(seed=seed, tgt_vocab=8) if arch == "transformer" else LstmSeq2Seq(20, 8, embed=8, hidden=12, dropout=0.0).eval()
    for p in m.parameters():
        p.data *= scale
    m.out.bias.data[EOS_ID] = -1e4  # every output 3 tokens long: 6³ candidates
    src = torch.tensor([[4, 5, 6]])
    best = _best_by_enumeration(m, src, 3)
    assert best != greedy(m, src, max_len=3)[0].tolist()  # (the seed picked so that greedy misses it)
    assert beam_search(m, src, beam=36, alpha=0.0, max_len=3)[0].tolist() == best


def test_reorder_state_picks_rows_on_dim_one():
    state = (torch.arange(12.0).view(2, 3, 2), torch.arange(24.0).view(1, 3, 2, 4))
    picked = reorder_state(state, torch.tensor([2, 2, 0]))
    assert picked[0][:, 0].equal(state[0][:, 2]) and picked[0][:, 2].equal(state[0][:, 0]) and picked[1][:, 1].equal(state[1][:, 2])


@pytest.mark.parametrize("tie", [False, True])
def test_onnx_encoder_and_cached_step_translate_as_pytorch(tmp_path, tie):
    m = transformer(tie=tie)
    export_seq2seq(m, tmp_path, SRC)
    onnx = OnnxSeq2Seq(tmp_path)
    inputs = {i.name: i.shape for i in onnx.step.get_inputs()}
    assert inputs["keys"] == [2, "batch", 2, "past", 8] and onnx.state_names == ["keys", "values"]
    check = seq2seq_parity(m, onnx, SRC)
    assert check.same_translation == 1.0 and check.max_abs_diff < 1e-4
    assert seq2seq_parity(m, onnx, SRC[2:, :2]).same_translation == 1.0  # one sentence alone, another length
    assert torch.equal(beam_search(onnx, SRC, beam=3), beam_search(m, SRC, beam=3))  # the cache reordered in numpy-fed tensors too


def test_config_builds_the_transformer_and_rejects_the_other_archs_fields():
    cfg = Seq2SeqConfig(arch="transformer", hidden=32, heads=4, layers=2, decoder_layers=1, ffn=48, tie_embeddings=True, dropout=0.0)
    m = cfg.build(30, 40, 0)
    assert isinstance(m, TransformerSeq2Seq) and len(m.encoder) == 2 and len(m.decoder) == 1 and m.out is None
    assert m.decoder[0].ffn.fc1.out_features == 48 and cfg.describe() == "transformer 2+1x32 h4 ffn 48"
    assert set(ARCHS) == set(SEQ2SEQ)  # every registered model can be built from a config
    assert Seq2SeqConfig(arch="transformer", hidden=96, heads=32).build(30, 40, 0).heads == 32  # an odd head width is a valid model


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ({"arch": "transformer", "embed": 16}, "embed: for arch lstm_attention only"),
        ({"arch": "transformer", "hidden": 30, "heads": 4}, "a multiple of heads (4)"),
        ({"heads": 2}, "heads: for arch transformer only"),
    ],
)
def test_fields_of_the_other_arch_exit_2_and_write_nothing(tmp_path, student, message):
    result = run_cli(tmp_path, {**TINY, "student": {"epochs": 1, **student}})
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


TRANSFORMERS = {
    **TINY,
    "teacher": {"arch": "transformer", "hidden": 32, "heads": 4, "layers": 1, "ffn": 64, "dropout": 0.1, "epochs": 2, "batch_size": 32, "lr": 0.003},
    "student": {"arch": "transformer", "hidden": 16, "heads": 2, "layers": 1, "ffn": 32, "tie_embeddings": True, "dropout": 0.1, "epochs": 1, "batch_size": 32, "lr": 0.003},
}


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transformer-translation")
    run_cli_with(folder, TRANSFORMERS, DISTIL_CACHE=str(folder / "teacher-cache"))
    return folder / "out"


def test_a_transformer_teacher_and_students_run_every_method_and_export(transformer_run):
    out = transformer_run
    summary = json.loads((out / "summary.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["teacher", "student_data", "student_word_kd", "student_seq_kd", "student_seq_word_kd"]
    assert [m["arch"] for m in summary["models"][:2]] == ["transformer 1+1x32 h4 ffn 64", "transformer 1+1x16 h2 ffn 32"]
    assert summary["models"][0]["params"] > summary["models"][1]["params"]
    for m in summary["models"]:
        assert 0 <= m["bleu"] <= 100 and m["latency_ms_greedy"] > 0 and (out / m["weights"]).is_file()
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    teacher_nll = [-e["val_accuracy"] for e in epochs if e["model"] == "teacher"]
    assert len(teacher_nll) == 2 and teacher_nll[1] < teacher_nll[0]  # the transformer teacher learns
    assert all("kd" in e["terms"] for e in epochs if e["model"] in ("student_word_kd", "student_seq_word_kd"))  # word-level KD from its logits
    assert summary["models"][3]["teacher_outputs"]["beam"] == 5  # sequence-level KD: its beam translations
    export = summary["export"]
    assert export["model"] == "student_seq_kd" and export["parity"]["same_translation"] == 1.0 and export["parity"]["alone_same_translation"] == 1.0
    assert export["parity"]["max_abs_diff"] < 1e-4


def test_serving_a_transformer_run_in_onnx_runtime_translates_as_pytorch(transformer_run):
    served = {runtime: load_translators(transformer_run, runtime) for runtime in ("onnxruntime", "torch")}
    assert all(t.info["parity"]["same_translation"] == 1.0 for t in served["onnxruntime"])  # the student (greedy) and the teacher (beam 5)
    text = "And God said, Let there be light."
    answers = {runtime: TestClient(create_translation_app(t)).post("/predict", json={"text": text}).json() for runtime, t in served.items()}
    assert [a["runtime"] for a in answers["onnxruntime"]["translations"]] == ["onnxruntime", "onnxruntime"]
    assert [a["translation"] for a in answers["onnxruntime"]["translations"]] == [a["translation"] for a in answers["torch"]["translations"]]


def test_a_transformer_teacher_distils_an_lstm_student(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTIL_CACHE", str(tmp_path / "teacher-cache"))
    config = {**TRANSFORMERS, "student": TINY["student"], "distill": {"methods": ["word_kd", "seq_kd"]}, "evaluate": {**TINY["evaluate"], "export": False}}
    result = run_cli(tmp_path, config)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [m["arch"] for m in summary["models"]] == ["transformer 1+1x32 h4 ffn 64", "lstm 1x16", "lstm 1x16"]
    assert summary["models"][1]["word_kd"] == {"alpha": 0.5, "T": 1.0} and summary["models"][2]["teacher_outputs"]["beam"] == 5


def test_the_shipped_transformer_config_is_sized_like_the_lstm_one():
    from distil.config.translation import load_translation_config

    count = lambda cfg: sum(p.numel() for p in cfg.build(2000, 2000, 0).parameters())
    transformers = load_translation_config("configs/translation/bible_en_es_transformer.yaml")
    lstms = load_translation_config("configs/translation/bible_en_es.yaml")
    assert (count(transformers.teacher), count(transformers.student)) == (1_901_056, 489_728)  # as its header says
    assert (count(lstms.teacher), count(lstms.student)) == (1_947_856, 611_376)
