"""`distil run` on a `kind: lm` config end to end (tiny GPTs on a few hundred KJV verses), the top-k token
cache, sequence-level samples, and bad configs (exit 2, nothing trained)."""

import copy
import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from distil.cli import app
from distil.engine.lm_teacher import TokenLogitCache, teacher_samples
from distil.engine.teacher_store import TeacherStore
from distil.losses import FKL
from distil.models.causal_lm import build_causal_lm

pytest.importorskip("tokenizers")
runner = CliRunner()
TINY = {
    "kind": "lm",
    "name": "tiny",
    "data": {"books": ["Gen", "Exod", "Ruth", "Jonah"], "max_verses": 80, "test_books": ["Ruth"], "val_books": ["Jonah"], "context_length": 24, "vocab_size": 300},
    "teacher": {"kwargs": {"width": 32, "depth": 2, "heads": 2}, "train": {"steps": 30, "batch_size": 8, "warmup": 5}},
    "student": {"kwargs": {"width": 16, "depth": 1, "heads": 2}, "train": {"steps": 12, "batch_size": 8, "warmup": 2, "blocks": 40}},
    "methods": ["data", "fkl", {"name": "gkd", "on_policy": 0.5}, "seqkd"],
    "sequence_level": {"samples": 16},
    "generation": {"prompts": ["In the beginning", "And"], "max_new_tokens": 6, "speed_batches": [1, 4], "speed_new_tokens": 6, "speed_repeats": 1, "prompt_tokens": 4},
}


def run(tmp_path, raw, *extra):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), *extra])


def test_lm_run_end_to_end(tmp_path):
    result = run(tmp_path, TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "student_data", "student_fkl", "student_gkd", "student_seqkd"]
    teacher, data = rows["teacher"], rows["student_data"]
    assert teacher["params"] > 3 * data["params"] and teacher["kl_to_teacher"] == 0.0
    assert teacher["test_ppl"] < data["test_ppl"] < 300  # trained below the uniform 300
    assert math.isclose(data["test_ppl"], math.exp(data["test_nll"]))
    for row in rows.values():
        assert set(row["tokens_per_s"]) == {"greedy_b1", "greedy_b4", "sample_b1"} and len(row["samples"]) == 2
    assert rows["student_fkl"]["gap_recovered"] is not None and "gap_recovered" not in data
    assert 0 < rows["student_gkd"]["train"]["on_policy_steps"] < 12
    cache = summary["teacher_outputs"]["token_logits"]
    assert summary["data"]["student_blocks"] == 40 < summary["data"]["blocks"]["train"]  # the students' seeded subset
    tokens = 40 * 24
    assert cache["bytes"] == tokens * (256 * (2 + 2) + 2)  # the default k = 256: fp16 values + int16 ids per kept token, one fp16 rest
    assert summary["data"]["source_books"]["test"] == ["Ruth"]
    assert "In the beginning" in (tmp_path / "out" / "report.html").read_text()
    assert "student_gkd" in result.output and "gap recovered" in result.output
    assert "warning: the top-256 teacher cache" not in result.output  # a tiny, nearly uniform teacher
    assert 0 <= cache["kl_to_exact"] < 0.05 and 256 / 300 < cache["mass_kept"] < 1  # near-uniform: a flat rest is close
    assert (tmp_path / "out" / "student_fkl.safetensors").is_file()


def test_word_level_kd_on_the_teachers_samples_reads_a_cache_of_the_samples(tmp_path):
    raw = {**copy.deepcopy(TINY), "methods": ["seqkd_fkl"]}
    result = run(tmp_path, raw)
    assert result.exit_code == 0, result.output
    outputs = json.loads((tmp_path / "out" / "summary.json").read_text())["teacher_outputs"]
    # the teacher's logits on its 16 samples, not on the 40 training blocks (no data cache is needed)
    assert "token_logits" not in outputs and outputs["sample_token_logits"]["bytes"] == 16 * 24 * (256 * 4 + 2)
    # a second run reads the samples and their logits from disk (the same key on the device they come back to)
    again = runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "again"), f"teacher.weights={tmp_path / 'out' / 'teacher.safetensors'}"])
    assert again.exit_code == 0, again.output
    outputs = json.loads((tmp_path / "again" / "summary.json").read_text())["teacher_outputs"]
    assert outputs["teacher_samples"]["from_disk"] and outputs["sample_token_logits"]["from_disk"]


def test_a_lossy_teacher_cache_is_named_with_what_it_loses(tmp_path):
    raw = {**copy.deepcopy(TINY), "methods": ["fkl"], "cache": {"top_k": 2}}
    result = run(tmp_path, raw)
    assert result.exit_code == 0, result.output
    cache = json.loads((tmp_path / "out" / "summary.json").read_text())["teacher_outputs"]["token_logits"]
    assert cache["kl_to_exact"] > 0.05
    text = " ".join(result.output.split())
    assert f"the top-2 teacher cache keeps {cache['mass_kept']:.1%} of the teacher's probability mass" in text
    assert f"KL(teacher ‖ cached) = {cache['kl_to_exact']:.3f} nats per token" in text and "Raise cache.top_k" in text


def test_token_cache_top_k_and_from_disk(tmp_path):
    teacher = build_causal_lm("gpt", vocab_size=50, context_length=10, seed=0, width=16, depth=1, heads=2).eval()
    blocks = torch.randint(1, 50, (6, 11))
    store = TeacherStore(tmp_path)
    full = TokenLogitCache(teacher, blocks, vocab_size=50, top_k=50, store=store)  # k ≥ V: fp16 copies
    exact = teacher(blocks[:, :-1]).detach()
    index = torch.tensor([4, 1])
    assert torch.allclose(full[index], exact[index], rtol=1e-3, atol=1e-3)
    top = TokenLogitCache(teacher, blocks, vocab_size=50, top_k=5, store=store)
    assert top.nbytes == 6 * 10 * (5 * 4 + 2)
    p, q = exact[index].softmax(-1), top[index].softmax(-1)
    kept = exact[index].topk(5, dim=-1).indices
    assert torch.allclose(q.gather(-1, kept), p.gather(-1, kept), atol=2e-3)  # top-k probabilities kept
    assert float(FKL()(top[index], exact[index])) < 0.01
    again = TokenLogitCache(teacher, blocks, vocab_size=50, top_k=5, store=store)
    assert again.from_disk and not top.from_disk and torch.equal(again[index], top[index])
    # what the truncation loses, measured over every token when the cache is built, kept on disk
    every = torch.arange(6)
    log_p = exact.log_softmax(-1)
    lost = (log_p.exp() * (log_p - top[every].log_softmax(-1))).sum(-1).mean()
    assert math.isclose(top.kl_to_exact, float(lost), rel_tol=1e-3) and again.kl_to_exact == top.kl_to_exact > 0
    assert math.isclose(top.mass_kept, float(log_p.exp().topk(5, -1).values.sum(-1).mean()), rel_tol=1e-5)
    assert full.kl_to_exact < 1e-5 and math.isclose(full.mass_kept, 1.0, rel_tol=1e-6)
    assert top.describe()["kl_to_exact"] == top.kl_to_exact and top.nbytes == 6 * 10 * (5 * 4 + 2)
    samples, from_disk = teacher_samples(teacher, blocks, n=4, prompt_tokens=3, store=store)
    assert samples.shape == (4, 11) and not from_disk
    cached, from_disk = teacher_samples(teacher, blocks, n=4, prompt_tokens=3, store=store)
    assert from_disk and torch.equal(cached, samples)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["methods"].append({"name": "x", "los": "FKL"}), "methods.4.los: unknown key (did you mean 'loss'?)"),
        (lambda r: r["methods"].append({"name": "x", "loss": "FLK"}), "unknown loss 'FLK'"),
        (lambda r: r["methods"].append("gdk"), "unknown method 'gdk'"),
        (lambda r: r["teacher"]["kwargs"].update(width=30, heads=4), "width 30 is not divisible by heads 4"),
        (lambda r: r["data"].update(test_books=["Ruht"]), "data.test_books: unknown book"),
    ],
)
def test_bad_lm_configs_exit_2_before_any_training(tmp_path, change, message):
    raw = copy.deepcopy(TINY)
    change(raw)
    result = run(tmp_path, raw)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_hf_teacher_folder_with_its_tokenizer(tmp_path):
    """A Hugging Face causal LM folder as the teacher, its tokenizer.json as the data's; a vocabulary that
    does not match the tokenizer is refused before anything is written."""
    transformers = pytest.importorskip("transformers")
    from distil.data.text.lm import learn_bpe

    folder = tmp_path / "teacher"
    tok = learn_bpe(["In the beginning God created the heaven and the earth.\n"] * 3 + ["And God said, Let there be light\n"], 280, tmp_path / "tok")

    def save(vocab):
        torch.manual_seed(0)
        config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        (folder / "tokenizer.json").write_bytes((tok.folder / "tokenizer.json").read_bytes())

    raw = copy.deepcopy(TINY)
    raw["data"]["tokenizer"] = f"hf:{folder}"
    raw["teacher"] = {"model": f"hf:{folder}"}
    raw["methods"] = ["data", "rkl"]
    save(tok.vocab_size + 3)
    result = run(tmp_path, raw)
    assert result.exit_code == 2 and f"predicts {tok.vocab_size + 3} tokens but the tokenizer has {tok.vocab_size}" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()
    save(tok.vocab_size)
    result = run(tmp_path, raw)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["data"]["tokenizer"] == f"hf:{folder}" and "train" not in summary["models"][0]  # loaded, not trained
    assert summary["models"][2]["kl_to_teacher"] > 0
    from distil.serve.lm_app import load_lm_models

    served = load_lm_models(tmp_path / "out", "onnxruntime")  # the hf teacher on torch, the gpt student on ONNX Runtime
    assert [(m.name, m.backend) for m in served] == [("teacher", "torch"), ("student_rkl", "onnxruntime")]


@pytest.mark.parametrize("keep_best", [True, False])
def test_fit_lm_ends_at_the_best_validation_perplexity(keep_best):
    """The student ends with the weights of the evaluation with the lowest val_ppl (steps 2, 4, 6: the
    middle one here), or with its last weights when keep_best is off; best_step says which."""
    from distil.engine.lm_trainer import LMMethod, LMTrainSettings, fit_lm
    from distil.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=50, width=16, depth=1, heads=2, mlp_ratio=2, dropout=0.0, max_length=16)
    blocks = torch.randint(0, 50, (16, 9))
    seen, scores = [], iter([5.0, 3.0, 4.0])

    def evaluate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"val_ppl": next(scores)}

    settings = LMTrainSettings(steps=6, batch_size=4, lr=0.01, warmup=1, eval_every=2, keep_best=keep_best)
    result = fit_lm(model, blocks, LMMethod("data"), settings, seed=0, log=lambda record: None, evaluate=evaluate)
    expected = seen[1] if keep_best else seen[2]
    assert not torch.equal(seen[1]["embedding.weight"], seen[2]["embedding.weight"])  # the weights did move between evaluations
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert result["best_step"] == (4 if keep_best else 6) and not model.training
