"""Real end-to-end runs of `distil` on scikit-learn's 8×8 digits (seconds each)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from distil.cli import app
from distil.models import build_model
from distil.weights import load_weights, save_weights

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 3, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, "epochs": 3, "batch_size": 64, "lr": 0.1},
    "measure": {"latency_repeats": 3, "throughput_repeats": 1},
}
FIELDS = {"name", "role", "method", "arch", "accuracy", "params", "size_bytes", "latency_ms_b1", "throughput_b256", "seed"}
runner = CliRunner()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def config_file(tmp_path: Path, raw: dict = TINY) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    result = run_cli("run", config_file(tmp), "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    return tmp / "out", result


def test_run_writes_summary_metrics_weights(tiny_run):
    out, result = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "digits"
    names = [m["name"] for m in summary["models"]]
    assert names == ["teacher", "student_scratch", "student_kd"]
    for m in summary["models"]:
        assert FIELDS <= set(m)
        assert 0.0 <= m["accuracy"] <= 1.0 and m["seed"] == 3
        assert m["latency_ms_b1"] > 0 and m["throughput_b256"] > 0
        assert m["size_bytes"] == (out / m["weights"]).stat().st_size
        assert (out / m["weights"]).stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not mkstemp's 0600
    roles = {m["name"]: (m["role"], m["method"]) for m in summary["models"]}
    assert roles == {"teacher": ("teacher", "trained"), "student_scratch": ("student", "scratch"), "student_kd": ("student", "kd")}
    # the teacher learned something real on digits, even in 3 epochs
    assert summary["models"][0]["accuracy"] > 0.85
    assert summary["models"][2]["teacher_outputs"]["kind"] == "exact"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and {line["model"] for line in lines} == set(names)
    kd_terms = [line["terms"] for line in lines if line["model"] == "student_kd"]
    assert all(set(t) == {"kd", "ce"} for t in kd_terms)
    # the table is printed
    assert "student_kd" in result.output and "test acc" in result.output


def test_saved_weights_reload_to_same_accuracy(tiny_run):
    out, _ = tiny_run
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[8])
    load_weights(model, out / "student_kd.safetensors")
    result = run_cli("eval", config_file(out.parent), "--weights", out / "student_kd.safetensors")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    reported = json.loads(result.stdout.strip().splitlines()[-1])["accuracy"]
    assert reported == pytest.approx(summary["models"][2]["accuracy"])


def test_same_seed_same_metrics(tiny_run, tmp_path):
    out, _ = tiny_run
    again = tmp_path / "again"
    assert run_cli("run", config_file(tmp_path), "--out", again).exit_code == 0

    def strip(path):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]

    assert strip(out / "metrics.jsonl") == strip(again / "metrics.jsonl")
    acc = lambda p: [m["accuracy"] for m in json.loads((p / "summary.json").read_text())["models"]]
    assert acc(out) == acc(again)


def test_loaded_teacher_and_augmented_run_replays_cached_views(tiny_run, tmp_path):
    out, _ = tiny_run
    raw = {**TINY, "teacher": {**TINY["teacher"], "weights": str(out / "teacher.safetensors")}, "scratch": False}
    raw["data"] = {**TINY["data"], "augment": {"crop_padding": 1}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out", "student.epochs=1")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [m["method"] for m in summary["models"]] == ["loaded", "kd"]
    assert summary["models"][-1]["teacher_outputs"]["kind"] == "views"
    assert summary["models"][-1]["teacher_outputs"]["bytes"] > 0
    teacher_before = json.loads((out / "summary.json").read_text())["models"][0]["accuracy"]
    assert summary["models"][0]["accuracy"] == pytest.approx(teacher_before)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"student": {**TINY["student"], "arch": "resnet_nope"}}, "resnet_nope"),
        ({"data": {"name": "npz", "path": "missing.npz"}}, "missing.npz"),
        ({"data": {"name": "imagenet"}}, "imagenet"),
        ({"teacher": {**TINY["teacher"], "weights": "nope.safetensors"}}, "nope.safetensors"),
        ({"student": {**TINY["student"], "epoch": 2}}, "student.epoch"),
    ],
)
def test_bad_input_exits_2_without_summary(tmp_path, change, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # a stale summary from an earlier run must not survive
    result = run_cli("run", config_file(tmp_path, {**TINY, **change}), "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (out / "summary.json").exists() or (out / "summary.json").read_text() == "{}"


def test_checkpoint_that_does_not_fit(tmp_path):
    wrong = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[32])
    save_weights(wrong, tmp_path / "wrong.safetensors")
    raw = {**TINY, "teacher": {**TINY["teacher"], "weights": "wrong.safetensors"}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "does not fit the model" in result.output and "shape mismatch" in result.output


def test_pickle_is_refused(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "t.safetensors")
    raw = {**TINY, "teacher": {**TINY["teacher"], "weights": "t.safetensors"}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not a safetensors file" in result.output


def test_console_script_exit_code_and_no_traceback(tmp_path):
    raw = {**TINY, "student": {**TINY["student"], "arch": "nope"}}
    proc = subprocess.run([sys.executable, "-m", "distil", "run", str(config_file(tmp_path, raw)), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "summary.json").exists()
