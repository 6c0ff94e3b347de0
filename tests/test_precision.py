"""bf16 autocast training: the switch is validated, reaches the forwards, keeps the loss maths in fp32, and learns."""

import json
import math

import torch
from test_run import TINY, config_file, run_cli
from torch import nn

from distil.api import distill, evaluate, train
from distil.data import load_dataset
from distil.engine.objective import Objective
from distil.engine.precision import autocast, cpu_has_native_bf16, resolve_precision
from distil.losses import KD

CPU = torch.device("cpu")


def test_bf16_run_learns_on_digits(tmp_path):
    """`distil run` with precision bf16 for both models: finite losses, accuracy far above chance (10 %)."""
    raw = {**TINY, "teacher": {**TINY["teacher"], "precision": "bf16"}, "student": {**TINY["student"], "kwargs": {"hidden": [32]}, "precision": "bf16"}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    accuracy = {m["name"]: m["accuracy"] for m in summary["models"]}
    assert accuracy["teacher"] > 0.8 and accuracy["student_kd"] > 0.6, accuracy
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(math.isfinite(r["loss"]) and all(math.isfinite(v) for v in r["terms"].values()) for r in records)
    kd_terms = [r["terms"] for r in records if r.get("model") == "student_kd"]
    assert kd_terms and all(set(t) == {"kd", "ce"} for t in kd_terms), kd_terms


def test_unknown_precision_exits_2_naming_the_field(tmp_path):
    raw = {**TINY, "student": {**TINY["student"], "precision": "fp16"}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "student.precision" in result.output and "'bf16'" in result.output


def test_bf16_reaches_the_forward_and_weights_stay_fp32():
    """``distill(..., precision="bf16")``: the student's layers compute in bf16, its parameters stay fp32, it learns."""
    data = load_dataset("digits", val_size=0.2, seed=0)
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    train(teacher, data, epochs=3, batch_size=64, lr=0.1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    seen: set[torch.dtype] = set()
    student[1].register_forward_hook(lambda m, i, o: seen.add(o.dtype) if m.training else None)
    history = []
    distill(teacher, student, data, epochs=3, batch_size=64, lr=0.1, precision="bf16", on_epoch=history.append)
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert all(math.isfinite(r.loss) and all(math.isfinite(v) for v in r.terms.values()) for r in history)
    assert evaluate(student, data.test) > 0.8


def test_kd_of_identical_bf16_logits_is_zero_and_gradients_flow():
    """Property, over seeds and temperatures: under bf16 autocast KD(s, s) ≈ 0, KD(s, t≠s) > 0 with finite
    fp32 gradients reaching the layer, and the value equals the fp32 maths on the same (bf16) logits."""
    for seed in range(5):
        for T in (1.0, 4.0, 20.0):
            torch.manual_seed(seed)
            layer = nn.Linear(16, 10)
            x = torch.randn(32, 16) * 3
            objective = Objective([KD(T=T) * 1.0])
            with autocast("bf16", CPU):
                logits = layer(x)
                assert logits.dtype == torch.bfloat16
                same = objective({"logits": logits}, {"logits": logits.detach()}, None)
            assert all(v.dtype == torch.float32 for v in same.values())
            assert all(abs(v.item()) < 1e-6 for v in same.values()), (seed, T, same)
            teacher = logits.detach().float() + torch.randn(32, 10)
            with autocast("bf16", CPU):
                logits = layer(x)
                values = objective({"logits": logits}, {"logits": teacher}, None)
            loss = sum(values.values())
            assert loss.item() > 0
            loss.backward()
            assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
            reference = KD(T=T)(logits.detach().float(), teacher)
            torch.testing.assert_close(values["kd"], reference, rtol=1e-6, atol=1e-7)


def test_auto_precision_follows_native_bf16(tmp_path):
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_native_bf16() else "fp32")
    (tmp_path / "zen4").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    (tmp_path / "skylake").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert cpu_has_native_bf16(tmp_path / "zen4") and not cpu_has_native_bf16(tmp_path / "skylake")
    assert not cpu_has_native_bf16(tmp_path / "missing")
    try:
        resolve_precision("fp16", CPU)
    except ValueError as err:
        assert "fp16" in str(err) and "bf16" in str(err)
    else:
        raise AssertionError("fp16 accepted")
