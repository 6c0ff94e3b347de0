"""``distil bench speed``: what distillation costs next to training the student alone.

In one process, on the same data, models, seed and training settings, for inputs without and with
augmentation, epochs of these runs are measured *interleaved* (one epoch of each in turn, in an order
rotated every round, so a change in the machine's load hits all of them alike), and ratios of the median epoch times are reported:

- ``student``: the student trained alone on the labels (CE only) — the floor;
- ``kd``: distil's KD epoch, with its teacher outputs (exact cache, or pre-drawn views with augmentation);
- ``reference``: the loop the PyTorch knowledge-distillation tutorial writes — a ``torch.utils.data``
  ``Dataset`` with per-sample transforms, a ``DataLoader``, a teacher forward on every batch;
- ``kd_online`` (augmentation only): distil's KD with a teacher forward per batch on freshly drawn
  augmentations, the accuracy the cached views must not fall below.

``inputs`` chooses the settings (default ``noaug`` and ``aug``); ``fm`` (``--inputs noaug,aug,fm``): function matching (Beyer et al. 2022, the ``fm``
preset) on crop + flip + mixup/cutmix pairs replayed from the view cache, against the student trained
alone on the same mixed inputs (CE on the mixed labels): ``student`` and ``kd`` only.

An epoch's time includes its validation pass, for every run. Building a cache is a one-off cost
(reused from disk by later runs with the same teacher and data); it is reported apart, not in epochs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from distil.config import ExperimentConfig, validate_config
from distil.data import BatchAugment, Dataset
from distil.data.mix import Mix, Mixed
from distil.engine.evaluate import accuracy
from distil.engine.methods import METHODS
from distil.engine.objective import Objective, build_objective, task_objective
from distil.engine.teacher_outputs import teacher_outputs
from distil.engine.teacher_sources import OnlineTeacher
from distil.engine.trainer import OPTIMIZERS, FitResult, TrainSettings, fit, fit_epochs, lr_factor
from distil.errors import ConfigError
from distil.hardware import machine, resolve_device
from distil.weights import atomic_write, load_weights

try:
    import resource
except ImportError:  # not on Unix
    resource = None  # type: ignore[assignment]

#: The augmentation of the "aug" setting: the crop + flip the demo teacher was trained with.
AUGMENT = BatchAugment(crop_padding=2, hflip=True)

#: The inputs of the ``fm`` setting: crop + flip after a mixup or cutmix pair (α = 1, half each).
FM_AUGMENT = Mixed(AUGMENT, Mix(mixup=1.0, cutmix=1.0))

#: The settings ``--inputs`` chooses from.
INPUTS: dict[str, BatchAugment | Mixed] = {"noaug": BatchAugment(), "aug": AUGMENT, "fm": FM_AUGMENT}

#: ``--quick``: scikit-learn digits with small CNNs, seconds end to end (the test runs it).
QUICK = {
    "name": "speed-quick",
    "seed": 0,
    "data": {"name": "digits", "val_size": 0.1},
    "teacher": {"arch": "cnn", "kwargs": {"widths": [16, 32], "convs_per_stage": 1}, "epochs": 3, "batch_size": 64, "lr": 0.05},
    "student": {"arch": "cnn", "kwargs": {"widths": [8, 16], "convs_per_stage": 1}, "epochs": 2, "batch_size": 64, "lr": 0.05},
    "measure": {"latency_repeats": 1, "throughput_repeats": 1},
}


def quick_config() -> ExperimentConfig:
    return validate_config(copy.deepcopy(QUICK), source="bench speed --quick")


# ---------------------------------------------------------------------------------------------
# The reference: the PyTorch KD tutorial's loop (Dataset + per-sample transforms + DataLoader,
# teacher forward on every batch, soft-target loss written out as the tutorial writes it).


class TensorImages(TorchDataset):
    """A map-style dataset over stored tensors that transforms one sample per ``__getitem__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.x[i]), self.y[i]


def normalize(image: torch.Tensor) -> torch.Tensor:
    """The tutorial's per-sample ``ToTensor`` + ``Normalize``; our tensors are already normalized, so the
    statistics are (0, 1): the values do not change, the per-sample work is done as in the tutorial."""
    return (image.float() - 0.0) / 1.0


def random_crop(padding: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``RandomCrop(size, padding)``: zero-pad, then cut a window at a random offset (Python ``random``)."""

    def crop(image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        padded = F.pad(image, (padding, padding, padding, padding))
        top, left = random.randint(0, 2 * padding), random.randint(0, 2 * padding)
        return padded[..., top : top + h, left : left + w]

    return crop


def random_hflip(image: torch.Tensor) -> torch.Tensor:
    """``RandomHorizontalFlip(p=0.5)``."""
    return image.flip(-1) if random.random() < 0.5 else image


def compose(*transforms: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(image: torch.Tensor) -> torch.Tensor:
        for t in transforms:
            image = t(image)
        return image

    return apply


def reference_epochs(
    teacher: nn.Module, student: nn.Module, data: Dataset, settings: TrainSettings, augment: BatchAugment, *, T: float, soft_weight: float, seed: int, workers: int
) -> Iterator[float]:
    """The tutorial's training loop, one epoch per ``next()``; yields the validation accuracy.

    Same optimizer, learning-rate schedule, batch size and loss weights as distil's run, so
    accuracies compare; the data path and the teacher forward per batch are the tutorial's.
    """
    random.seed(seed)
    steps = [random_crop(augment.crop_padding)] if augment.crop_padding else []
    steps += [random_hflip] if augment.hflip else []
    # As in the tutorial, the dataset lives on the CPU and each batch is moved to the device.
    device = data.train.x.device
    train_set = TensorImages(data.train.x.cpu(), data.train.y.cpu(), compose(*steps, normalize))
    val_set = TensorImages(data.val.x.cpu(), data.val.y.cpu(), normalize)
    g = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, num_workers=workers, generator=g)
    val_loader = DataLoader(val_set, batch_size=settings.batch_size, shuffle=False, num_workers=workers)
    optimizer = OPTIMIZERS[settings.optimizer](list(student.parameters()), settings)
    total = settings.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / total, settings))
    ce_loss = nn.CrossEntropyLoss()
    teacher.eval()
    for _ in range(settings.epochs):
        student.train()
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            student_logits = student(inputs)
            soft_targets = nn.functional.softmax(teacher_logits / T, dim=-1)
            soft_prob = nn.functional.log_softmax(student_logits / T, dim=-1)
            soft_targets_loss = torch.sum(soft_targets * (soft_targets.log() - soft_prob)) / soft_prob.size()[0] * (T**2)
            label_loss = ce_loss(student_logits, labels)
            loss = soft_weight * soft_targets_loss + (1 - soft_weight) * label_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        student.eval()
        correct = 0
        with torch.no_grad():
            for inputs, labels in val_loader:
                inputs, labels = inputs.to(device), labels.to(device)
                correct += (student(inputs).argmax(1) == labels).sum().item()
        yield correct / len(val_set)


# ---------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the reference's DataLoader workers)."""
    if resource is None:  # not on Unix: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(epochs: Iterator[Any]) -> Callable[[], tuple[float, float]]:
    """A callable that runs the next epoch and returns its wall time and CPU time.

    CPU time is the work done, whatever else runs on the machine; wall time is what a user waits.
    On a machine shared with other jobs the two differ, and CPU-time ratios are the steadier ones.
    """

    def step() -> tuple[float, float]:
        start, cpu = time.perf_counter(), cpu_seconds()
        next(epochs)
        return time.perf_counter() - start, cpu_seconds() - cpu

    return step


def _load(config: ExperimentConfig, samples: int | None) -> tuple[Dataset, nn.Module, dict[str, Any]]:
    cfg = config
    data = cfg.data.load(cfg.seed)
    if data.paired:
        raise ConfigError(f"distil bench speed times one input per sample; {data.name!r} is paired (the teacher sees other inputs); bench it with distil run")
    if samples is not None and samples < len(data.train):
        data = replace(data, train=data.train.subset(torch.randperm(len(data.train), generator=torch.Generator().manual_seed(cfg.seed))[:samples]))
    teacher = cfg.teacher.build(data, cfg.seed)
    info: dict[str, Any] = {"arch": cfg.teacher.arch}
    if cfg.teacher.weights:
        load_weights(teacher, cfg.teacher.weights, cfg.teacher.sha256)
        info["weights"] = Path(cfg.teacher.weights).name
    else:
        start = time.perf_counter()
        fit(teacher, data.train, data.val, task_objective(), cfg.teacher.settings(), seed=cfg.seed, augment=AUGMENT)
        info["trained_seconds"] = round(time.perf_counter() - start, 2)
    return data, teacher, info


def bench_speed(
    config: ExperimentConfig,
    out: str | Path,
    *,
    epochs: int | None = None,
    samples: int | None = None,
    reference_workers: int = 2,
    command: str = "distil bench speed",
    log: Callable[[str], None] = print,
    inputs: tuple[str, ...] = ("noaug", "aug"),
) -> dict[str, Any]:
    """Measure both settings; writes ``out/speed.json`` and returns it (see the module docstring)."""
    unknown = sorted(set(inputs) - set(INPUTS))
    if unknown or not inputs:
        raise ConfigError(f"--inputs: unknown {unknown or 'empty list'}; known: {', '.join(INPUTS)}")
    cfg = config
    device = resolve_device(cfg.device)
    settings = cfg.student.settings()
    if epochs is not None:
        settings = replace(settings, epochs=epochs)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    data, teacher, teacher_info = _load(cfg, samples)
    teacher_info["test_accuracy"] = accuracy(teacher, data.test.x, data.test.y)
    data = replace(data, train=data.train.to(device), val=data.val.to(device), test=data.test.to(device))
    teacher.to(device)
    log(f"data: {data.name} train {len(data.train)} / val {len(data.val)} / test {len(data.test)}; {settings.epochs} epochs per run, batch {settings.batch_size}; threads {torch.get_num_threads()}")

    def student() -> nn.Module:
        return cfg.student.build(data, cfg.seed).to(device)

    def kd_objective(method: str | None = None) -> Objective:
        specs = cfg.distill.term_specs() if method is None else list(METHODS[method].terms)
        return build_objective(specs, student(), teacher, data.train.x[:8], n_data=len(data.train), seed=cfg.seed)

    result: dict[str, Any] = {
        "dataset": data.name,
        "train_samples": len(data.train),
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "method": cfg.distill.method,
        "teacher": teacher_info,
        "student_arch": cfg.student.arch,
        "threads": torch.get_num_threads(),
        "reference_workers": reference_workers,
        "device": str(device),
        "command": command,
        "machine": machine(),
        "settings": {},
    }
    for name, augment in ((n, INPUTS[n]) for n in inputs):
        mixes = isinstance(augment, Mixed)
        objective = kd_objective("fm" if mixes else None)
        T = objective.temperature
        soft_weight = next((t.weight for t in objective.terms if t.loss.uses_teacher), 0.9)
        start = time.perf_counter()
        outputs = teacher_outputs(teacher, data.train.x, augment, objective.teacher_taps, settings=cfg.cache.settings(cfg.seed), temperature=T)
        cache_info = {**outputs.info, "seconds": round(time.perf_counter() - start, 2)}
        log(f"{name}: teacher outputs: {cache_info['kind']} ({cache_info.get('bytes', 0):,} bytes, {'from disk' if cache_info.get('from_disk') else 'built'} in {cache_info['seconds']} s)")
        models = {"student": student(), "kd": student()}
        results = {k: FitResult(best_epoch=0, best_val_accuracy=-1.0) for k in ("student", "kd", "kd_online")}
        runs = {
            "student": _timed(fit_epochs(models["student"], data.train, data.val, task_objective(), settings, seed=cfg.seed, augment=augment, result=results["student"])),
            "kd": _timed(fit_epochs(models["kd"], data.train, data.val, objective, settings, seed=cfg.seed, teacher=outputs, augment=augment, result=results["kd"])),
        }
        if not mixes:  # the tutorial's loop has no mixup / cutmix
            assert isinstance(augment, BatchAugment)
            models["reference"] = student()
            runs["reference"] = _timed(
                reference_epochs(copy.deepcopy(teacher).to(memory_format=torch.contiguous_format), models["reference"], data, settings, augment, T=T, soft_weight=soft_weight, seed=cfg.seed, workers=reference_workers)
            )
        if augment.enabled and not mixes:
            models["kd_online"] = student()
            online = OnlineTeacher(teacher, objective.teacher_taps)
            runs["kd_online"] = _timed(fit_epochs(models["kd_online"], data.train, data.val, kd_objective(), settings, seed=cfg.seed, teacher=online, augment=augment, result=results["kd_online"]))
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        for epoch in range(settings.epochs):
            # Rotate the order every round, so no run always follows the same one (another job's
            # periodic load would otherwise fall on the same run each round).
            for run_name in names[epoch % len(names) :] + names[: epoch % len(names)]:
                wall, used = runs[run_name]()
                times[run_name].append(wall)
                cpu[run_name].append(used)
            log(f"{name}: epoch {epoch + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s (cpu {cpu[k][-1]:.2f} s)" for k, v in times.items()))
        for run_name, run in runs.items():  # exhaust the generators: distil's runs restore their best weights
            try:
                run()
            except StopIteration:
                pass
        medians = {k: statistics.median(v) for k, v in times.items()}
        cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
        result["settings"][name] = {
            "augment": _describe(augment),
            "epoch_seconds": {k: [round(s, 4) for s in v] for k, v in times.items()},
            "median_epoch_seconds": {k: round(v, 4) for k, v in medians.items()},
            "epoch_cpu_seconds": {k: [round(s, 4) for s in v] for k, v in cpu.items()},
            "median_epoch_cpu_seconds": {k: round(v, 4) for k, v in cpu_medians.items()},
            "test_accuracy": {k: accuracy(m, data.test.x, data.test.y) for k, m in models.items()},
            "teacher_outputs": cache_info,
        }
        result[f"kd_over_student_{name}"] = round(medians["kd"] / medians["student"], 3)
        result[f"cpu_kd_over_student_{name}"] = round(cpu_medians["kd"] / cpu_medians["student"], 3)
        if "reference" in medians:
            result[f"reference_over_kd_{name}"] = round(medians["reference"] / medians["kd"], 3)
            result[f"cpu_reference_over_kd_{name}"] = round(cpu_medians["reference"] / cpu_medians["kd"], 3)
        if "kd_online" in medians:
            result[f"kd_online_over_kd_{name}"] = round(medians["kd_online"] / medians["kd"], 3)
        del outputs
    if load_start is not None:
        result["load_average"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    out = Path(out)
    text = json.dumps(result, indent=1, default=str)
    atomic_write(out / "speed.json", lambda tmp: tmp.write_text(text + "\n"))
    atomic_write(out / "speed.md", lambda tmp: tmp.write_text(markdown(result)))
    return result


def _describe(augment: BatchAugment | Mixed) -> dict[str, Any]:
    if isinstance(augment, Mixed):
        base = augment.base
        assert isinstance(base, BatchAugment)
        return {**_describe(base), "mixup": augment.mix.mixup, "cutmix": augment.mix.cutmix, "mix_prob": augment.mix.prob}
    return {"crop_padding": augment.crop_padding, "hflip": augment.hflip}


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(setting, run, median s/epoch, × student, test accuracy) for the printed table."""
    table = []
    for name, s in result["settings"].items():
        base = s["median_epoch_seconds"]["student"]
        for run, median in s["median_epoch_seconds"].items():
            acc = s["test_accuracy"].get(run, math.nan)
            table.append((name, run, f"{median:.2f}", f"{median / base:.2f}", f"{100 * acc:.2f} %"))
    return table


def markdown(result: dict[str, Any]) -> str:
    """The measured tables of ``speed.json`` as Markdown (``DIR/speed.md``)."""
    lines = [
        f"Command: `{result['command']}`  ",
        f"Data: {result['dataset']}, {result['train_samples']:,} training samples; {result['epochs']} epochs per run, batch {result['batch_size']}, "
        f"method {result['method']}; {result['threads']} torch thread(s); reference DataLoader workers {result['reference_workers']}; device {result['device']}.  ",
        "Teacher: " + ", ".join(f"{k} {100 * v:.2f} %" if k == "test_accuracy" else f"{k} {v}" for k, v in result["teacher"].items()) + ".",
        "",
        "| inputs | run | epoch wall times (s, interleaved) | median s/epoch | × student | median CPU s/epoch | × student (CPU) | test accuracy |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["settings"].items():
        base = s["median_epoch_seconds"]["student"]
        for run, median in s["median_epoch_seconds"].items():
            times = ", ".join(f"{t:.1f}" for t in s["epoch_seconds"][run])
            cpu = s.get("median_epoch_cpu_seconds", {})
            cpu_text = f"{cpu[run]:.2f} | {cpu[run] / cpu['student']:.2f}" if run in cpu else "– | –"
            lines.append(f"| {name} | {run} | {times} | {median:.2f} | {median / base:.2f} | {cpu_text} | {100 * s['test_accuracy'][run]:.2f} % |")
    lines += ["", "| ratio (of median epoch times; cpu_: of median CPU times) | value |", "|---|---:|"]
    for key in (
        "kd_over_student_noaug", "kd_over_student_aug", "kd_over_student_fm", "reference_over_kd_noaug", "reference_over_kd_aug", "kd_online_over_kd_aug",
        "cpu_kd_over_student_noaug", "cpu_kd_over_student_aug", "cpu_kd_over_student_fm", "cpu_reference_over_kd_noaug", "cpu_reference_over_kd_aug",
    ):
        if key in result:
            lines.append(f"| `{key}` | {result[key]:.3f} |")
    lines += ["", "Teacher outputs (built once, not in the epoch times):", ""]
    for name, s in result["settings"].items():
        info = s["teacher_outputs"]
        lines.append(f"- {name}: {info['kind']}, {info.get('bytes', 0):,} bytes, {'loaded from disk' if info.get('from_disk') else 'built'} in {info['seconds']} s ({info['reason']})")
    if "load_average" in result:
        lines += ["", f"1-minute load average at start {result['load_average']['start']}, at end {result['load_average']['end']} (other jobs shared the machine)."]
    return "\n".join(lines) + "\n"
