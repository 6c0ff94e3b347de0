"""What a per-epoch checkpoint costs: median time of ``FitCheckpoint.save`` beside the median epoch.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/checkpoint/checkpoint_cost.py   # table for benchmarks/checkpoint/README.md

Trains the MNIST-1D models of configs/mnist1d/methods.yaml for a few epochs with a checkpoint after
each (SGD with momentum: the optimizer state is one more copy of the weights), and saves bigger
CIFAR-size models after a few steps on 8 random images (their save cost only: an epoch of them on
this CPU takes minutes). The file holds weights, best-epoch weights and momentum: about 3x fp32 params.
"""

from __future__ import annotations

import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distil.data import Split, load_dataset
from distil.engine.objective import task_objective
from distil.engine.trainer import LoopState, TrainSettings, fit
from distil.hardware import set_threads
from distil.models import build_model, count_parameters
from distil.session import RunDir
from distil.session.checkpoints import RunCheckpoints


class TimedCheckpoint:
    def __init__(self, name: str) -> None:
        root = Path(tempfile.mkdtemp())
        (root / "metrics.jsonl").write_text("")
        self.inner = RunCheckpoints(RunDir(root)).fit(name)
        self.seconds: list[float] = []

    def restore(self, state: LoopState) -> None:
        self.inner.restore(state)

    def save(self, state: LoopState) -> None:
        start = time.perf_counter()
        self.inner.save(state)
        self.seconds.append(time.perf_counter() - start)

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.inner.run.root.iterdir())


def main() -> None:
    threads = set_threads()
    data = load_dataset("mnist1d", val_size=500, seed=0)
    rows = []
    for arch, kwargs, epochs in [("mlp", {"hidden": [100, 100]}, 10), ("cnn1d", {"widths": [32, 64, 128]}, 5)]:
        torch.manual_seed(0)
        model = build_model(arch, input_shape=data.input_shape, num_classes=data.num_classes, **kwargs)
        checkpoint = TimedCheckpoint(arch)
        result = fit(
            model, data.train, data.val, task_objective(), TrainSettings(epochs=epochs, batch_size=100), seed=0, checkpoint=checkpoint
        )
        epoch = statistics.median(r.seconds for r in result.history)
        rows.append((f"`{arch}` {kwargs} on MNIST-1D (3,500 train)", count_parameters(model), checkpoint, epoch))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for arch in ("wrn_40_2", "resnet32x4"):
        torch.manual_seed(0)
        model = build_model(arch, input_shape=(3, 32, 32), num_classes=100)
        checkpoint = TimedCheckpoint(arch)
        fit(model, Split(x, y), Split(x, y), task_objective(), TrainSettings(epochs=5, batch_size=8), seed=0, checkpoint=checkpoint)
        rows.append((f"`{arch}` (CIFAR-100 size; save only)", count_parameters(model), checkpoint, float("nan")))

    print(f"Machine: {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, {threads} torch thread(s).\n")
    print("| model | params | checkpoint on disk | save (median) | epoch (median) | save / epoch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, params, checkpoint, epoch in rows:
        save = statistics.median(checkpoint.seconds)
        epoch_text, ratio = ("–", "–") if math.isnan(epoch) else (f"{epoch:.2f} s", f"{100 * save / epoch:.1f} %")
        print(f"| {name} | {params:,} | {checkpoint.bytes / 2**20:.2f} MiB | {1000 * save:.1f} ms | {epoch_text} | {ratio} |")


if __name__ == "__main__":
    main()
