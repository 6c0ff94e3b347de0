"""One experiment, end to end: data → teacher (trained or loaded) → students → strategy → test → summary.

``run_experiment`` is what ``distil run`` calls; ``distil train`` and ``distil distill`` run a subset of
its steps. All inputs are validated (data found, every model built, teacher weights checked) before
the first epoch, so a typo fails in seconds, not after the teacher has trained.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from distil.checkpoint import RunCheckpoints, check_resume
from distil.config import ExperimentConfig, ModelConfig, dump_config
from distil.data import BatchAugment, Dataset, load_dataset
from distil.engine import distributed
from distil.engine.distributed import Distributed
from distil.engine.evaluate import accuracy
from distil.engine.measure import measure
from distil.engine.methods import build_objective
from distil.engine.objective import Objective, task_objective
from distil.engine.taps import LOGITS
from distil.engine.teacher_outputs import CacheSettings, objective_temperature, teacher_outputs
from distil.engine.trainer import FitResult, TrainSettings, fit
from distil.errors import ConfigError
from distil.models import build_model, count_parameters
from distil.run_dir import RunDir, read_summary
from distil.strategies.run import prepare_strategy
from distil.weights import file_sha256, load_weights, save_tensors, save_weights

STEPS = ("teacher", "scratch", "kd")


@dataclass
class ModelResult:
    name: str
    role: str
    method: str
    arch: str
    accuracy: float
    params: int
    size_bytes: int
    latency_ms_b1: float
    throughput_b256: float
    seed: int
    val_accuracy: float
    best_epoch: int
    epochs: int
    train_seconds: float
    weights: str
    sha256: str
    teacher_outputs: dict[str, Any] | None = None  # for distilled students: exact cache or online teacher
    runtime: str = "torch"
    nonzeros: int = 0
    latency_ms_b1_p95: float = 0.0
    latency_ms_b256: float = 0.0
    latency_ms_b256_p95: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use device: auto or cpu")
    return device


def settings_of(cfg: ModelConfig) -> TrainSettings:
    return TrainSettings(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        milestones=tuple(cfg.milestones),
        gamma=cfg.gamma,
        precision=cfg.precision,
    )


def build(cfg: ModelConfig, data: Dataset, seed: int) -> nn.Module:
    """The model with the initial weights that ``seed`` gives: scratch and KD students start equal."""
    torch.manual_seed(seed)
    return build_model(cfg.arch, input_shape=data.input_shape, num_classes=data.num_classes, **cfg.kwargs)


class Experiment:
    def __init__(
        self,
        config: ExperimentConfig,
        out: str | Path,
        console: Console | None = None,
        command: str | None = None,
        dist: Distributed | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config
        self.run_dir = RunDir(out)
        self.dist = dist  # under torchrun: this rank; only rank 0 writes the run directory and prints
        self.writes = dist is None or dist.is_main
        self.console = (console or Console(stderr=True)) if self.writes else Console(stderr=True, quiet=True)
        self.resume = resume
        self.checkpoints = RunCheckpoints(self.run_dir, self.console, writes=self.writes)
        self.command = command or shlex.join(["distil", *sys.argv[1:]])
        self.device = dist.device if dist is not None else resolve_device(config.device)
        self.results: list[ModelResult] = []
        self.models: dict[str, nn.Module] = {}  # every recorded model by name: strategies build on them

    def run(self, steps: Collection[str] = STEPS, methods: Sequence[str] | None = None) -> dict[str, Any]:
        """Run ``steps``; the ``kd`` step distils one student per method (default: the config's method)."""
        cfg = self.config
        # Methods named explicitly (a benchmark) run as presets, adjusted but not extended by distill.terms.
        extend = methods is None
        methods = list(methods or [cfg.distill.method])
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown steps {sorted(unknown)}; known: {STEPS}")
        if cfg.logging.tensorboard:
            from distil.scalars import require_tensorboard

            require_tensorboard()
        started = time.perf_counter()
        # Checked before anything is loaded or written: a refused resume leaves the directory untouched.
        plan = {"steps": [s for s in STEPS if s in steps], "methods": methods if "kd" in steps else []}
        found = check_resume(self.run_dir, dump_config(cfg), plan, self.console) if self.resume else "new"
        if found == "finished":
            return read_summary(self.run_dir.path)
        data = load_dataset(cfg.data.name, path=cfg.data.path, val_size=cfg.data.val_size, seed=cfg.seed, **cfg.data.options)
        described = data.describe()
        if self.dist is not None:
            data = self._shard(data, steps)
        # Build every model before training any, so a bad arch or weights file fails at once.
        teacher = build(cfg.teacher, data, cfg.seed) if {"teacher", "kd"} & set(steps) and cfg.teacher is not None else None
        if teacher is not None and cfg.teacher.weights:
            load_weights(teacher, cfg.teacher.weights, cfg.teacher.sha256)
        if {"scratch", "kd"} & set(steps):
            build(cfg.student, data, cfg.seed)
        strategy = prepare_strategy(self, data, teacher) if "kd" in steps else None
        direct = "kd" in steps and teacher is not None and (strategy is None or getattr(cfg.strategy, "baseline", False))
        objectives = {m: self._objective(data, teacher, m, extend) for m in methods} if direct else {}
        if self.writes:
            self.run_dir.start(dump_config(cfg))
        if found == "new":
            self.checkpoints.clear()
        self.checkpoints.start(plan)
        if self.dist is not None:
            self.dist.barrier()  # no rank may look for checkpoints before rank 0 has cleared a new run's old ones
        per_rank = f" ({len(data.train)} per process × {self.dist.world_size})" if self.dist is not None else ""
        self.console.print(f"data: {data.name} train {described['sizes']['train']}{per_rank} / val {len(data.val)} / test {len(data.test)}, input {data.input_shape}, from {data.source}; device {self.device}", highlight=False)
        data = _on_device(data, self.device)
        augment = BatchAugment(crop_padding=cfg.data.augment.crop_padding, hflip=cfg.data.augment.hflip)

        if teacher is not None:
            teacher.to(self.device)
            if cfg.teacher.weights:
                self._record("teacher", "teacher", "loaded", teacher, data, cfg.teacher, fit_result=None)
            else:
                result = self._fit("teacher", teacher, data, task_objective(cfg.teacher.label_smoothing), cfg.teacher, augment, None)
                self._record("teacher", "teacher", "trained", teacher, data, cfg.teacher, result)
        if "scratch" in steps:
            student = build(cfg.student, data, cfg.seed).to(self.device)
            result = self._fit("student_scratch", student, data, task_objective(cfg.student.label_smoothing), cfg.student, augment, None)
            self._record("student_scratch", "student", "scratch", student, data, cfg.student, result)
        outputs, outputs_info = None, {}
        for method, objective in objectives.items():
            assert teacher is not None
            if outputs is None or outputs_info.get("taps") != sorted(objective.teacher_taps | {LOGITS}):
                outputs = None  # hold one cache at a time: methods with other taps replace it
                outputs, outputs_info = self._teacher_outputs(teacher, data, objective, augment)
            name = f"student_{method}"
            student = build(cfg.student, data, cfg.seed).to(self.device)
            result = self._fit(name, student, data, objective, cfg.student, augment, outputs)
            self._record(name, "student", method, student, data, cfg.student, result, teacher_outputs=outputs_info)
            self._save_objective(name, objective)
        if strategy is not None:
            strategy.run(data, teacher, augment)

        summary = {
            "name": cfg.name,
            "dataset": data.name,
            "data": described,
            "seed": cfg.seed,
            "strategy": cfg.strategy.name,
            "device": str(self.device),
            "command": self.command,
            "machine": machine(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - started, 2),  # of this process: a resumed run counts from its restart
            "resumed": found == "resume",
            "plan": plan,  # steps and methods: --resume refuses another command's run
            "models": [asdict(r) for r in self.results],
        }
        if self.dist is not None:
            summary["distributed"] = {**self.dist.describe(), "train_per_rank": len(data.train)}
        if not self.writes:
            return summary
        self.run_dir.write_summary(summary)
        self.checkpoints.clear()  # summary.json now says everything; a resume of a finished run returns it
        # Compression (pruning fine-tunes, int8 calibration, ONNX) runs in rank 0 alone, as one process.
        if cfg.compress is not None and "kd" in steps:
            from distil.compress.pipeline import compress_run

            summary = compress_run(self.run_dir.path, cfg, console=self.console)
        return summary

    def _shard(self, data: Dataset, steps: Collection[str]) -> Dataset:
        """This rank's shard of the training split, after checking that the batches of the models that
        will train divide among the ranks (``batch_size`` is the global batch)."""
        assert self.dist is not None
        cfg = self.config
        trains_teacher = "teacher" in steps and cfg.teacher is not None and not cfg.teacher.weights
        if trains_teacher:
            self.dist.check_batch_size(cfg.teacher.batch_size, "teacher.batch_size")
        if {"scratch", "kd"} & set(steps):
            self.dist.check_batch_size(cfg.student.batch_size, "student.batch_size")
        return self.dist.shard_dataset(data, cfg.seed)

    def _teacher_outputs(self, teacher: nn.Module, data: Dataset, objective: Objective, augment: BatchAugment):
        outputs = teacher_outputs(
            teacher, data.train.x, augment, objective.teacher_taps, settings=cache_settings(self.config), temperature=objective_temperature(objective.losses)
        )
        info = outputs.info
        if info["kind"] != "online":
            where = "loaded from disk" if info["from_disk"] else f"computed in {info['seconds']} s"
            self.console.print(f"teacher outputs: {info['kind']} cache, {info['bytes']:,} bytes, {where}", highlight=False)
        return outputs, info

    def _objective(self, data: Dataset, teacher: nn.Module | None, method: str, extend: bool = True) -> Objective:
        """The distillation objective, built (taps resolved, shapes probed, connectors made) before any training."""
        cfg = self.config
        try:
            specs = cfg.distill.term_specs(method, extend)
            torch.manual_seed(cfg.seed)
            objective = build_objective(specs, build(cfg.student, data, cfg.seed), teacher, data.train.x[:8], len(data.train))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"distill (method {method!r}): {err.args[0]}") from None
        for term in objective.terms:
            if term.loss.uses_target and data.train.y is None:
                raise ConfigError(f"distill: term {term.name} needs labels, but the training data have none")
        return objective

    def _save_objective(self, name: str, objective: Objective) -> None:
        """Connectors and the losses' own parameters (not the student's) go beside the student's weights."""
        params = {k: v for k, v in objective.named_parameters()}
        if params and self.writes:
            save_tensors(params, self.run_dir.path / f"{name}.objective.safetensors")

    def _fit(self, name: str, model: nn.Module, data: Dataset, objective: Objective, cfg: ModelConfig, augment: BatchAugment, outputs, seed: int | None = None) -> FitResult:
        from distil.progress import epoch_reporter
        from distil.scalars import epoch_scalars

        with epoch_reporter(self.console, name, cfg.epochs) as reporter, epoch_scalars(self.config.logging.tensorboard and self.writes, self.run_dir.path, name) as scalars:

            def on_epoch(record) -> None:
                if self.writes:
                    self.run_dir.log_epoch(name, record.as_dict())
                    scalars(record)
                reporter.on_epoch(record)

            seed = self.config.seed if seed is None else seed
            return fit(
                model, data.train, data.val, objective, settings_of(cfg), seed=seed, teacher=outputs, augment=augment,
                on_epoch=on_epoch, on_batch=reporter.on_batch, dist=self.dist, checkpoint=self.checkpoints.fit(name),
            )

    def _record(
        self, name: str, role: str, method: str, model: nn.Module, data: Dataset, cfg: ModelConfig, fit_result: FitResult | None, teacher_outputs: dict | None = None
    ) -> None:
        self.models[name] = model
        if not self.writes:  # weights, measurements and test accuracy: rank 0's (the models are identical)
            return
        path = save_weights(model, self.run_dir.weights(name), metadata={"arch": cfg.arch, "role": role, "method": method})
        measured = measure(model, data.input_shape, runtime="torch", latency_repeats=self.config.measure.latency_repeats, throughput_repeats=self.config.measure.throughput_repeats)
        self.results.append(
            ModelResult(
                name=name,
                role=role,
                method=method,
                arch=cfg.arch,
                accuracy=accuracy(model, data.test.x, data.test.y),
                params=count_parameters(model),
                size_bytes=path.stat().st_size,
                latency_ms_b1=measured["latency_ms_b1"],
                throughput_b256=measured["throughput_b256"],
                seed=self.config.seed,
                val_accuracy=accuracy(model, data.val.x, data.val.y) if len(data.val) else float("nan"),
                best_epoch=fit_result.best_epoch if fit_result else 0,
                epochs=len(fit_result.history) if fit_result else 0,
                train_seconds=round(fit_result.train_seconds, 2) if fit_result else 0.0,
                weights=path.name,
                sha256=file_sha256(path),
                teacher_outputs=teacher_outputs,
                nonzeros=measured["nonzeros"],
                latency_ms_b1_p95=measured["latency_ms_b1_p95"],
                latency_ms_b256=measured["latency_ms_b256"],
                latency_ms_b256_p95=measured["latency_ms_b256_p95"],
            )
        )


def cache_settings(config: ExperimentConfig) -> CacheSettings:
    """The config's ``cache`` section; the views are drawn with the experiment's seed."""
    c = config.cache
    return CacheSettings(mode=c.mode, views=c.views, top_k=c.top_k, max_bytes=c.max_bytes, dir=c.dir, store=c.store, seed=config.seed)


def _on_device(data: Dataset, device: torch.device) -> Dataset:
    from dataclasses import replace

    return replace(data, train=data.train.to(device), val=data.val.to(device), test=data.test.to(device))


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def run_experiment(
    config: ExperimentConfig, out: str | Path, steps: Collection[str] = STEPS, console: Console | None = None, methods: Sequence[str] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``steps`` of the experiment; returns the summary also written to ``out/summary.json``.

    Under ``torchrun`` every process runs this: each trains on its shard of the training data with
    gradients averaged across processes, and only rank 0 prints and writes ``out``. ``resume``
    continues an interrupted run in ``out`` from its checkpoints (see ``distil.checkpoint``).
    """
    if "scratch" in steps and not config.scratch:
        steps = [s for s in steps if s != "scratch"]
    with distributed.process_group(config.device) as dist:
        return Experiment(config, out, console, dist=dist, resume=resume).run(steps, methods)
