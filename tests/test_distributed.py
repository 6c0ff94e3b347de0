"""Data-parallel training: real gloo process groups on the CPU, and a real `torchrun` of `distil run`.

Two ranks training on different shards must hold bit-identical models after every step (gradients,
BatchNorm statistics and validation combined across ranks); a 2-process `distil run` must reach the
single-process run's accuracies within a tolerance, and only rank 0 may write.
"""

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

import distil
from distil.config import validate_config
from distil.data import Split, load_dataset
from distil.engine.distributed import Distributed, process_group
from distil.engine.methods import METHODS
from distil.engine.objective import build_objective
from distil.engine.teacher_outputs import teacher_outputs
from distil.engine.trainer import TrainSettings, fit
from distil.errors import ConfigError
from distil.experiment import Experiment, run_experiment
from distil.hardware import auto_threads, usable_cpus
from distil.models import build_model
from distil.session import RunSession

CPU = torch.device("cpu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: its own shard, its own initialisation; fit with a connector objective, save everything."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    with process_group("cpu") as dist:
        assert dist is not None and dist.backend == "gloo"
        data = load_dataset("digits", val_size=0.15, seed=0)
        index = dist.shard_index(len(data.train), seed=0)
        shard = data.train.subset(index)
        torch.manual_seed(100 + rank)  # different on purpose: fit's start broadcasts rank 0's weights
        student = build_model("cnn", input_shape=data.input_shape, num_classes=10, widths=(8, 16), convs_per_stage=1)
        torch.manual_seed(0)
        teacher = build_model("cnn", input_shape=data.input_shape, num_classes=10, widths=(16, 32), convs_per_stage=1)
        # the FitNet connector (1×1 conv + BN) differs per rank too
        objective = build_objective(METHODS["fitnet"].terms, student, teacher, shard.x[:8], n_data=len(shard), seed=200 + rank)
        outputs = teacher_outputs(teacher, shard.x, None, objective.teacher_taps)
        settings = TrainSettings(epochs=2, batch_size=64, lr=0.05)
        result = fit(student, shard, data.val, objective, settings, seed=0, teacher=outputs, dist=dist)

        # Gradients no rank computed stay None; one rank's gradient is averaged with the others' zeros.
        everyone, nobody, only_rank0 = (nn.Parameter(torch.zeros(3)) for _ in range(3))
        everyone.grad = torch.full((3,), float(rank + 1))
        only_rank0.grad = torch.full((3,), 4.0) if rank == 0 else None
        dist.average_gradients([everyone, nobody, only_rank0])

        tensors = {f"model.{k}": v.contiguous() for k, v in student.state_dict().items()}
        tensors.update({f"objective.{k}": v.detach().contiguous() for k, v in objective.named_parameters()})
        tensors.update(index=index, everyone=everyone.grad, only_rank0=only_rank0.grad)
        save_file(tensors, f"{out}/rank{rank}.safetensors")
        history = [r.as_dict() | {"seconds": 0} for r in result.history]
        Path(f"{out}/rank{rank}.json").write_text(json.dumps({"history": history, "nobody": nobody.grad is None}))


def test_two_ranks_hold_identical_models_although_their_shards_differ(tmp_path):
    mp.spawn(_train_worker, args=(2, free_port(), str(tmp_path)), nprocs=2)
    a, b = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    ja, jb = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    # disjoint, equal shards: 1222 training samples, 611 each
    assert len(a["index"]) == len(b["index"]) == 611
    assert not set(a["index"].tolist()) & set(b["index"].tolist())
    # every weight, BatchNorm statistic and connector parameter: bit for bit
    keys = [k for k in a if k.startswith(("model.", "objective."))]
    assert any(k.startswith("objective.") for k in keys) and any("running_mean" in k for k in keys)
    for k in keys:
        assert torch.equal(a[k], b[k]), k
    # metrics and validation reduced: the same history on both ranks, a real one
    assert ja["history"] == jb["history"]
    assert ja["history"][-1]["val_accuracy"] > 0.5
    assert ja["history"][-1]["loss"] < ja["history"][0]["loss"]
    # the gradient all-reduce: a mean over ranks; absent everywhere stays absent
    assert torch.equal(a["everyone"], torch.full((3,), 1.5)) and torch.equal(b["everyone"], a["everyone"])
    assert torch.equal(a["only_rank0"], torch.full((3,), 2.0))
    assert ja["nobody"] and jb["nobody"]


E2E = {
    "name": "ddp",
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 10, "batch_size": 64, "lr": 0.05},
    "student": {"arch": "mlp", "kwargs": {"hidden": [32]}, "epochs": 10, "batch_size": 64, "lr": 0.05},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}
# |Δ test accuracy| between the 2-process and the 1-process run, per model. Measured on this config for
# seeds 0–4 (digits test split, 359 images, 1 image = 0.28 points): at most 2.79 points (a student from
# scratch, seed 3), as large as the spread between seeds of the single-process run (94.4–97.5 % for the
# teacher). The shards change the batches, so the runs are two draws of the same training, not one.
TOLERANCE = 0.04


def test_torchrun_two_processes_match_one_and_only_rank0_writes(tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(E2E))
    env = {**os.environ, "DISTIL_THREADS": "1", "PYTHONPATH": str(Path(distil.__file__).parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "distil", "run", str(config), "--out", str(tmp_path / "two")]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = run_experiment(validate_config(E2E), tmp_path / "one")
    two = json.loads((tmp_path / "two" / "summary.json").read_text())

    assert [m["name"] for m in two["models"]] == [m["name"] for m in single["models"]] == ["teacher", "student_scratch", "student_kd"]
    for m1, m2 in zip(single["models"], two["models"]):
        assert abs(m1["accuracy"] - m2["accuracy"]) <= TOLERANCE, (m1["name"], m1["accuracy"], m2["accuracy"])
        assert m2["accuracy"] > 0.9 and m2["epochs"] == 10
    assert two["distributed"] == {"world_size": 2, "backend": "gloo", "local_world_size": 2, "train_per_rank": 611}
    assert two["data"] == single["data"]  # the whole dataset is described, not a shard
    # rank 0 alone wrote: the same files as one process, one metrics line per model and epoch, one table
    written = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert written == sorted(["report.html", *(p.name for p in (tmp_path / "one").iterdir())])  # the CLI adds the report
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 30
    assert done.stdout.count("student_kd") == 1 and done.stderr.count("data: digits train 1222 (611 per process × 2)") == 1
    # each rank cached the teacher's outputs for its own shard (two entries, keyed by the data they hold)
    entries = [json.loads(p.read_text()) for p in Path(os.environ["DISTIL_CACHE"]).glob("*.json")]
    assert sorted(e["samples"] for e in entries) == [611, 611, 1222]


def fake_rank(world: int) -> Distributed:
    """A rank's description without a process group: enough for the checks made before any collective."""
    return Distributed(rank=0, world_size=world, local_rank=0, local_world_size=world, device=CPU, backend="gloo")


def test_batch_size_and_sample_count_must_divide_among_processes(tmp_path):
    raw = copy.deepcopy(E2E) | {"scratch": False}
    raw["teacher"]["batch_size"] = 66
    with pytest.raises(ConfigError, match=r"student\.batch_size: 64 is the global batch.*multiple of 3"):
        Experiment(RunSession(validate_config(raw), tmp_path / "out", dist=fake_rank(3))).run()
    raw["student"]["batch_size"] = 2
    with pytest.raises(ConfigError, match=r"teacher\.batch_size: 66.*multiple of 4"):
        Experiment(RunSession(validate_config(raw), tmp_path / "out", dist=fake_rank(4))).run()
    with pytest.raises(ConfigError, match="3 training samples cannot be shared among 4 processes"):
        fake_rank(4).shard(Split(torch.zeros(3, 2)), seed=0)
    assert not (tmp_path / "out").exists()


def test_shards_are_equal_disjoint_and_drop_the_remainder():
    shards = [Distributed(r, 3, r, 3, CPU, "gloo").shard_index(10, seed=5) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert len(set(torch.cat(shards).tolist())) == 9  # disjoint; one of the ten samples left out
    assert torch.equal(shards[1], Distributed(1, 3, 1, 3, CPU, "gloo").shard_index(10, seed=5))  # fixed by the seed


def test_strategies_without_torchrun_support_fail_before_training(tmp_path):
    raw = copy.deepcopy(E2E) | {"strategy": {"name": "specialists", "subsets": [["3", 5]]}}
    with pytest.raises(ConfigError, match="'specialists' is not supported with torchrun yet"):
        Experiment(RunSession(validate_config(raw), tmp_path / "out", dist=fake_rank(2))).run()
    assert not (tmp_path / "out").exists()


def test_processes_on_one_machine_share_its_cores(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert auto_threads() == max(1, usable_cpus() // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(usable_cpus() + 1))
    assert auto_threads() == 1


# Enough student epochs (dropout: the global RNG matters) that the kill lands while student_kd trains.
RESUME = {
    **E2E,
    "name": "ddp-resume",
    "scratch": False,
    "teacher": {**E2E["teacher"], "epochs": 2},
    "student": {"arch": "mlp", "kwargs": {"hidden": [32], "dropout": 0.2}, "epochs": 40, "batch_size": 32, "lr": 0.05},
}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): torchrun's workers run in process groups of their own."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def test_torchrun_killed_and_resumed_ends_like_an_uninterrupted_run(tmp_path):
    """SIGKILL of torchrun and both ranks mid-fit, then `--resume` with 2 processes: each rank's batch
    order and RNG come back from the checkpoint, so the result equals the uninterrupted 2-process run."""
    import signal
    import time

    config = tmp_path / "resume.yaml"
    config.write_text(yaml.safe_dump(RESUME))
    env = {**os.environ, "DISTIL_THREADS": "1", "PYTHONPATH": str(Path(distil.__file__).parents[1])}

    def torchrun(out: Path, *extra: str, **kw) -> subprocess.Popen:
        port = str(free_port())
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_port", port]
        return subprocess.Popen([*command, "-m", "distil", "run", str(config), "--out", str(out), *extra], env=env, **kw)

    whole = torchrun(tmp_path / "whole", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = torchrun(tmp_path / "killed", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = tmp_path / "killed" / "checkpoints" / "student_kd.json"
    deadline = time.monotonic() + 240
    while not manifest.is_file() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    for pid in [killed.pid, *descendants(killed.pid)]:  # torchrun and both ranks (in their own process groups)
        os.kill(pid, signal.SIGKILL)
    killed.wait(timeout=30)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run ended before it could be killed"
    epoch = json.loads(manifest.read_text())["epoch"]
    assert 1 <= epoch < RESUME["student"]["epochs"]

    resumed = torchrun(tmp_path / "killed", "--resume", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert err.count("[student_kd] restored from student_kd.json: continues after epoch") == 1  # rank 0 alone prints
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "killed"))
    keys = ("name", "accuracy", "val_accuracy", "best_epoch", "epochs")
    assert [{k: m[k] for k in keys} for m in b["models"]] == [{k: m[k] for k in keys} for m in a["models"]]
    x, y = load_file(tmp_path / "whole" / "student_kd.safetensors"), load_file(tmp_path / "killed" / "student_kd.safetensors")
    assert all(torch.equal(x[k], y[k]) for k in x)
