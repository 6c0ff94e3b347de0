"""fp32 vs bf16 autocast training on this machine: epoch time and final test accuracy.

For each workload the fp32 and the bf16 run are built alike (same data, initial weights, seed, batch
order) and their epochs are run *interleaved*, in an order swapped every round, so a change in the
load of a shared machine hits both alike. Reported: median wall and CPU seconds per epoch (every epoch
is a repeat; the epoch includes its fp32 validation pass), their bf16/fp32 ratio from this one run,
and the test accuracy of the weights each run ends with (its best validation epoch).

Workloads:

- ``fmnist_kd``: configs/fashion_mnist/demo.yaml — the shipped CNN teacher (loaded, its logits cached
  once in fp32) distilled into the 24k-parameter CNN student, on a subset of the training images;
- ``fmnist_kd_online``: the same with the teacher's forward on every batch (under autocast too);
- ``mnist1d_mlp``: the MNIST-1D MLP student (configs/mnist1d/methods.yaml) trained on the labels;
- ``mnist1d_cnn1d``: the MNIST-1D 1-D CNN teacher trained on the labels.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/precision/precision.py --samples 20000 --epochs 5 --mnist1d-epochs 40 --out runs/precision-1t.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from distil.bench.speed import cpu_seconds
from distil.config import load_config
from distil.data import BatchAugment
from distil.engine.evaluate import accuracy
from distil.engine.objective import build_objective, task_objective
from distil.engine.teacher_outputs import teacher_outputs
from distil.engine.teacher_sources import OnlineTeacher
from distil.engine.trainer import FitResult, fit_epochs
from distil.hardware import machine, set_threads
from distil.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("fp32", "bf16")


def interleaved(make_run, epochs: int) -> dict[str, Any]:
    """``make_run(precision)`` → (epoch generator, model, FitResult, test split); epochs run in turn."""
    runs = {p: make_run(p) for p in PRECISIONS}
    wall: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    cpu: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for epoch in range(epochs):
        order = PRECISIONS if epoch % 2 == 0 else PRECISIONS[::-1]
        for p in order:
            start, used = time.perf_counter(), cpu_seconds()
            next(runs[p][0])
            wall[p].append(time.perf_counter() - start)
            cpu[p].append(cpu_seconds() - used)
    out: dict[str, Any] = {}
    for p, (epochs_left, model, result, test) in runs.items():
        for _ in epochs_left:  # exhausting the generator restores the best validation weights
            pass
        out[p] = {
            "epoch_seconds": [round(s, 3) for s in wall[p]],
            "epoch_cpu_seconds": [round(s, 3) for s in cpu[p]],
            "median_epoch_seconds": round(statistics.median(wall[p]), 3),
            "median_epoch_cpu_seconds": round(statistics.median(cpu[p]), 3),
            "final_loss": round(result.history[-1].loss, 4),
            "best_val_accuracy": round(result.best_val_accuracy, 4),
            "test_accuracy": round(accuracy(model, test.x, test.y), 4),
        }
    out["bf16_over_fp32_wall"] = round(out["bf16"]["median_epoch_seconds"] / out["fp32"]["median_epoch_seconds"], 3)
    out["bf16_over_fp32_cpu"] = round(out["bf16"]["median_epoch_cpu_seconds"] / out["fp32"]["median_epoch_cpu_seconds"], 3)
    return out


def fashion_mnist(samples: int, epochs: int, online: bool) -> dict[str, Any]:
    cfg = load_config(ROOT / "configs/fashion_mnist/demo.yaml")
    data = cfg.data.load(cfg.seed)
    data = replace(data, train=data.train.subset(torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:samples]))
    teacher = load_weights(cfg.teacher.build(data, cfg.seed), cfg.teacher.weights, cfg.teacher.sha256).eval().requires_grad_(False)

    def objective():
        return build_objective(cfg.distill.term_specs(), cfg.student.build(data, cfg.seed), teacher, data.train.x[:8], n_data=len(data.train), seed=cfg.seed)

    probe = objective()
    if online:
        outputs = OnlineTeacher(teacher, probe.teacher_taps)
    else:
        outputs = teacher_outputs(teacher, data.train.x, BatchAugment(), probe.teacher_taps, settings=replace(cfg.cache.settings(cfg.seed), store=False), temperature=probe.temperature)

    def make_run(precision: str):
        settings = replace(cfg.student.settings(), epochs=epochs, precision=precision)
        model, result = cfg.student.build(data, cfg.seed), FitResult(best_epoch=0, best_val_accuracy=-1.0)
        return fit_epochs(model, data.train, data.val, objective(), settings, seed=cfg.seed, teacher=outputs, result=result), model, result, data.test

    return {"train_samples": len(data.train), "val_samples": len(data.val), "epochs": epochs, "batch_size": cfg.student.batch_size, **interleaved(make_run, epochs)}


def mnist1d(role: str, epochs: int) -> dict[str, Any]:
    cfg = load_config(ROOT / "configs/mnist1d/methods.yaml")
    data = cfg.data.load(cfg.seed)
    model_cfg = cfg.student if role == "student" else cfg.teacher

    def make_run(precision: str):
        settings = replace(model_cfg.settings(), epochs=epochs, precision=precision)
        model, result = model_cfg.build(data, cfg.seed), FitResult(best_epoch=0, best_val_accuracy=-1.0)
        return fit_epochs(model, data.train, data.val, task_objective(), settings, seed=cfg.seed, result=result), model, result, data.test

    return {"arch": model_cfg.arch, "train_samples": len(data.train), "epochs": epochs, "batch_size": model_cfg.batch_size, **interleaved(make_run, epochs)}


def cpu_model() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], check=False, capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return {"model_name": name, "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000, help="Fashion-MNIST training images used")
    parser.add_argument("--epochs", type=int, default=4, help="Fashion-MNIST epochs per run")
    parser.add_argument("--mnist1d-epochs", type=int, default=20)
    parser.add_argument("--only", default="fmnist_kd,fmnist_kd_online,mnist1d_mlp,mnist1d_cnn1d")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    set_threads()
    workloads = {
        "fmnist_kd": lambda: fashion_mnist(args.samples, args.epochs, online=False),
        "fmnist_kd_online": lambda: fashion_mnist(args.samples, args.epochs, online=True),
        "mnist1d_mlp": lambda: mnist1d("student", args.mnist1d_epochs),
        "mnist1d_cnn1d": lambda: mnist1d("teacher", args.mnist1d_epochs),
    }
    result: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "threads": torch.get_num_threads(), "cpu": cpu_model(), "machine": machine(), "workloads": {}}
    for name in args.only.split(","):
        load = os.getloadavg()[0]
        result["workloads"][name] = w = workloads[name]()
        w["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # at start and end: others' jobs on a shared machine
        print(f"{name}: fp32 {w['fp32']['median_epoch_seconds']} s/epoch (acc {w['fp32']['test_accuracy']}), bf16 {w['bf16']['median_epoch_seconds']} s/epoch "
              f"(acc {w['bf16']['test_accuracy']}); bf16/fp32 wall {w['bf16_over_fp32_wall']}, cpu {w['bf16_over_fp32_cpu']}; load {w['load_average_1min']}", flush=True)  # fmt: skip
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # after every workload: a stopped run keeps what it measured


if __name__ == "__main__":
    main()
