"""Crash-safe runs: a real SIGKILL mid-run, `--resume`, and the same final numbers as an uninterrupted run.

The runs are real `python -m distil` processes (one torch thread each, so both runs sum in the same
order) on scikit-learn's 8×8 digits.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from distil.cli import app
from distil.config import DistillConfig
from distil.data import BatchAugment, Split
from distil.engine.objective import build_objective
from distil.engine.teacher_sources import CachedTeacher
from distil.engine.trainer import TrainSettings, fit, fit_epochs
from distil.session import RunDir
from distil.session.checkpoints import RunCheckpoints

SRC = Path(__file__).resolve().parents[1] / "src"
# Students with dropout (global RNG) and enough epochs that the kill lands while student_kd trains.
CONFIG = {
    "name": "resume",
    "seed": 5,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 3, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [32], "dropout": 0.2}, "epochs": 60, "batch_size": 32, "lr": 0.05},
    "measure": {"latency_repeats": 3, "throughput_repeats": 1},
}
runner = CliRunner()


def distil_process(*args) -> list[str]:
    return [sys.executable, "-m", "distil", *map(str, args)]


def env(tmp: Path, cache: str = "killed") -> dict[str, str]:
    """One torch thread; the resumed run shares the killed run's teacher cache, the uninterrupted run has its own."""
    return {**os.environ, "PYTHONPATH": str(SRC), "DISTIL_THREADS": "1", "DISTIL_CACHE": str(tmp / f"cache-{cache}"), "COLUMNS": "200"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and a run SIGKILLed during student_kd's training (kept as it was left)."""
    tmp = tmp_path_factory.mktemp("resume")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    # The uninterrupted run alongside the one to be killed (one thread each: neither changes the other's sums).
    log = tmp / "whole.log"
    with open(log, "w") as out:
        whole = subprocess.Popen(distil_process("run", config, "--out", tmp / "whole"), env=env(tmp, "whole"), stdout=out, stderr=out)
    killed = tmp / "killed"
    manifest = killed / "checkpoints" / "student_kd.json"
    process = subprocess.Popen(
        distil_process("run", config, "--out", killed), env=env(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not manifest.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    assert whole.wait(timeout=120) == 0, log.read_text()
    return tmp, config, tmp / "whole", killed


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(runs):
    tmp, config, whole, killed = runs
    assert not (killed / "summary.json").exists()
    epoch = json.loads((killed / "checkpoints" / "student_kd.json").read_text())["epoch"]
    assert 1 <= epoch < CONFIG["student"]["epochs"]  # killed mid-fit, after at least one checkpoint
    resumed = tmp / "resumed"
    shutil.copytree(killed, resumed)
    result = subprocess.run(
        distil_process("run", config, "--out", resumed, "--resume"), check=False, env=env(tmp), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "[teacher] restored from teacher.json: finished before the interruption" in result.stderr
    assert "[student_kd] restored from student_kd.json: continues after epoch" in result.stderr

    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, resumed))
    assert b["resumed"] and not a["resumed"]
    keys = ("name", "accuracy", "val_accuracy", "best_epoch", "epochs", "params")
    assert [{k: m[k] for k in keys} for m in b["models"]] == [{k: m[k] for k in keys} for m in a["models"]]
    for m in a["models"]:  # the weights themselves (the files' bytes differ: safetensors orders metadata at random)
        x, y = load_file(whole / m["weights"]), load_file(resumed / m["weights"])
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)

    # metrics.jsonl: the same epochs in the same order, with the same values (times aside)
    def metrics(d):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (d / "metrics.jsonl").read_text().splitlines()]

    assert metrics(resumed) == metrics(whole) and len(metrics(whole)) == 3 + 2 * 60
    assert not (resumed / "checkpoints").exists()  # a finished run keeps only its summary and weights

    again = runner.invoke(app, ["run", str(config), "--out", str(resumed), "--resume"])
    assert again.exit_code == 0 and "already finished" in again.output
    assert json.loads((resumed / "summary.json").read_text()) == b


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_resume_with_another_config_is_refused_and_names_the_keys(runs, tmp_path):
    _, config, _, killed = runs
    target = tmp_path / "killed"
    shutil.copytree(killed, target)
    before = snapshot(target)
    result = runner.invoke(app, ["run", str(config), "--out", str(target), "--resume", "student.epochs=61", "student.lr=0.1"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "student.epochs: 60 → 61" in message and "student.lr: 0.05 → 0.1" in message
    assert snapshot(target) == before


def test_resume_by_another_command_is_refused(runs, tmp_path):
    """Same config, other steps: `distil distill` (teacher, kd) cannot resume what `distil run` began."""
    _, config, _, killed = runs
    target = tmp_path / "killed"
    shutil.copytree(killed, target)
    before = snapshot(target)
    result = runner.invoke(app, ["distill", str(config), "--out", str(target), "--resume"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "another command (steps teacher, scratch, kd; methods kd)" in message and "this one runs steps teacher, kd" in message
    assert snapshot(target) == before


@pytest.mark.parametrize("which", ["tensors", "manifest"])
def test_corrupt_checkpoint_is_refused_by_hash_and_left_as_it_is(runs, tmp_path, which):
    _, config, _, killed = runs
    target = tmp_path / "killed"
    shutil.copytree(killed, target)
    manifest = target / "checkpoints" / "student_kd.json"
    path = manifest if which == "manifest" else manifest.parent / json.loads(manifest.read_text())["tensors"]
    data = bytearray(path.read_bytes())
    # a digit inside the manifest (still valid JSON) or a byte of the tensors
    at = data.index(b'"epoch": ') + 9 if which == "manifest" else len(data) - 100
    data[at] = ord("7") if data[at] != ord("7") else ord("8")
    path.write_bytes(bytes(data))
    before = snapshot(target)
    result = runner.invoke(app, ["run", str(config), "--out", str(target), "--resume"])
    assert result.exit_code == 2
    message = "".join(result.output.split())
    assert "corrupt" in message and path.name in message and "notloaded" in message
    assert snapshot(target) == before


def test_resume_of_a_directory_without_a_run_starts_one(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({**CONFIG, "teacher": {**CONFIG["teacher"], "epochs": 1}, "student": {**CONFIG["student"], "epochs": 1}})
    )
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "new"), "--resume"])
    assert result.exit_code == 0, result.output
    assert "holds no run" in result.output and (tmp_path / "new" / "summary.json").is_file()


def test_checkpoint_restore_continues_bit_identically(tmp_path):
    """Interrupt a fit after 2 of 5 epochs, continue it in a fresh model and objective: every weight,
    connector, CRD memory and history value equals the uninterrupted fit's."""
    g = torch.Generator().manual_seed(0)
    train, val = (
        Split(torch.randn(96, 1, 6, 6, generator=g), torch.randint(0, 3, (96,), generator=g)),
        Split(torch.randn(32, 1, 6, 6, generator=g), torch.randint(0, 3, (32,), generator=g)),
    )

    def student():
        torch.manual_seed(1)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(64, 3))

    torch.manual_seed(2)
    teacher = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(128, 3)).eval()
    # fitnet adds a connector (4 → 8 channels); crd adds heads, memory buffers and global-RNG negatives
    terms = [
        {"loss": "FitNet", "student": "1", "teacher": "1"},
        {"loss": "CRD", "weight": 0.8, "student": "3", "teacher": "2", "params": {"nce_k": 32, "feat_dim": 16}},
    ]
    specs = DistillConfig(method="fitnet", terms=terms).term_specs()

    def objective():
        return build_objective(specs, student(), teacher, train.x[:8], n_data=len(train), seed=3)

    settings = TrainSettings(epochs=5, batch_size=16, optimizer="adamw", lr=0.01)
    augment = BatchAugment(crop_padding=1, hflip=True)
    outputs = CachedTeacher(teacher, train.x, taps=objective().teacher_taps)

    torch.manual_seed(4)
    model, loss = student(), objective()
    whole = fit(model, train, val, loss, settings, seed=7, teacher=outputs, augment=augment)
    expected = {**model.state_dict(), **{f"objective.{k}": v for k, v in loss.state_dict().items()}}

    checkpoints = RunCheckpoints(RunDir(tmp_path))
    (tmp_path / "metrics.jsonl").write_text("")
    torch.manual_seed(4)
    first, first_loss = student(), objective()
    epochs = fit_epochs(first, train, val, first_loss, settings, seed=7, teacher=outputs, augment=augment, checkpoint=checkpoints.fit("s"))
    assert [next(epochs).epoch for _ in range(2)] == [1, 2]
    del epochs  # the "crash": the generator is dropped after epoch 2's checkpoint
    torch.manual_seed(123)  # whatever happened in between, the checkpoint's RNG state wins
    model, loss = student(), objective()
    resumed = fit(
        model, train, val, loss, settings, seed=7, teacher=outputs, augment=augment, checkpoint=RunCheckpoints(RunDir(tmp_path)).fit("s")
    )
    got = {**model.state_dict(), **{f"objective.{k}": v for k, v in loss.state_dict().items()}}
    assert set(got) == set(expected) and any(k.startswith("objective.connectors") for k in got) and any("memory" in k for k in got)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert [r.as_dict() | {"seconds": 0} for r in resumed.history] == [r.as_dict() | {"seconds": 0} for r in whole.history]
    assert (resumed.best_epoch, resumed.best_val_accuracy) == (whole.best_epoch, whole.best_val_accuracy)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]  # the restored epochs, logged again


def test_resume_reads_a_field_added_since_the_run_as_its_default(tmp_path):
    """A run made before a config field existed resumes: its absent field is the default, not a change;
    a value that was set differently is still refused, named."""
    from rich.console import Console

    from distil.config import validate_config
    from distil.config.files import dump_config
    from distil.errors import ConfigError
    from distil.session.checkpoints import check_resume
    from distil.session.run_dir import CONFIG as CONFIG_FILE
    from distil.session.run_dir import RunDir

    raw = {"name": "old", "data": {"name": "digits"}, "teacher": {"arch": "mlp"}, "student": {"arch": "mlp"}}
    config = dump_config(validate_config(raw))
    written = json.loads(json.dumps(config))
    del written["data"]["augment"]["mixup"], written["data"]["augment"]["cutmix"]  # fields a later version added
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(yaml.safe_dump(written))
    console = Console(file=open(os.devnull, "w"))
    plan = {"steps": ["teacher"], "methods": []}
    assert check_resume(RunDir(run), config, plan, console) in ("resume", "new")
    changed = json.loads(json.dumps(config))
    changed["seed"] = 7
    with pytest.raises(ConfigError, match=r"seed: 0 → 7"):
        check_resume(RunDir(run), changed, plan, console)
