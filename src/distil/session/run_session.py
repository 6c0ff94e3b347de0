"""A run session: one run directory and the steps every experiment and strategy is made of.

:class:`RunSession` holds what a command shares while it trains — the config, the run directory,
the console, the checkpoints, the device, the process group under torchrun, the results table and
the models recorded so far — and offers the steps as public methods:

- :meth:`~RunSession.build` — a model of the config, seeded;
- :meth:`~RunSession.objective` — ``distill.method`` + ``distill.terms`` (or given terms) between a
  student and a teacher (one builder: :func:`distil.engine.objective.build_objective`);
- :meth:`~RunSession.teacher_outputs` — the teacher's outputs over a training split: cached or online;
- :meth:`~RunSession.fit` — the one training loop, logged to metrics.jsonl, progress and TensorBoard,
  checkpointed every epoch;
- :meth:`~RunSession.record` — save the weights, measure, add a row to the table;
- :meth:`~RunSession.distil` — the distillation step: teacher outputs → fit → record → save objective.

The experiment (:mod:`distil.experiment`) and every strategy (:mod:`distil.strategies`) are sequences
of these steps; none of them writes to the run directory another way.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from distil.config import ExperimentConfig, ModelConfig
from distil.data import Augment, Dataset, Split
from distil.data.tokens import is_tokens
from distil.engine.distributed import Distributed
from distil.engine.evaluate import accuracy
from distil.engine.measure import measure, timing_input, tokenize_latency_ms
from distil.engine.objective import Objective, TermSpec, build_objective
from distil.engine.taps import LOGITS
from distil.engine.teacher_outputs import teacher_outputs
from distil.engine.teacher_sources import TeacherOutputs
from distil.engine.trainer import EpochRecord, FitResult, fit
from distil.errors import ConfigError
from distil.hardware import resolve_device
from distil.losses import LOSSES, Term
from distil.losses.response import NO_LABEL
from distil.session.checkpoints import RunCheckpoints
from distil.session.progress import epoch_reporter
from distil.session.results import ModelResult
from distil.session.run_dir import RunDir
from distil.session.scalars import epoch_scalars
from distil.weights import file_sha256, save_tensors, save_weights

#: Inputs a model is probed with to resolve taps and shapes (the first training samples).
PROBE = 8


class RunSession:
    """The run directory of one command and the steps that write to it (see the module docstring).

    Under torchrun every process has a session on its shard of the data; only rank 0's writes files
    and prints (``writes``), and all of them train, so the models stay identical.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        out: str | Path,
        *,
        console: Console | None = None,
        command: str | None = None,
        dist: Distributed | None = None,
    ) -> None:
        self.config = config
        self.run_dir = RunDir(out)
        self.dist = dist
        self.writes = dist is None or dist.is_main
        self.console = (console or Console(stderr=True)) if self.writes else Console(stderr=True, quiet=True)
        self.checkpoints = RunCheckpoints(self.run_dir, self.console, writes=self.writes)
        self.command = command or shlex.join(["distil", *sys.argv[1:]])
        try:
            self.device = dist.device if dist is not None else resolve_device(config.device)
        except ValueError as err:
            raise ConfigError(f"device: {err}") from None
        self.results: list[ModelResult] = []
        #: every recorded model by name: a strategy builds on the run's (born-again starts from student_scratch)
        self.models: dict[str, nn.Module] = {}

    @property
    def seed(self) -> int:
        return self.config.seed

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    # ------------------------------------------------------------------------------------- building

    def build(self, cfg: ModelConfig, data: Dataset, seed: int | None = None, **kwargs: Any) -> nn.Module:
        """``cfg``'s model for ``data``'s shapes with the initial weights ``seed`` gives (default: the run's)."""
        return cfg.build(data, self.seed if seed is None else seed, **kwargs)

    def objective(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        data: Dataset,
        *,
        terms: Sequence[TermSpec | Term] | None = None,
        method: str | None = None,
        extend: bool = True,
        train: Split | None = None,
        transfer: bool = False,
        context: str = "",
        head_from_probe: bool = False,
    ) -> Objective:
        """The objective between ``student`` and ``teacher``, built before any training.

        ``terms`` default to ``distill.method`` (or ``method``) with ``distill.terms`` applied
        (``extend=False``: they only adjust the preset's terms). Shapes are probed on the first
        training inputs; the loss arguments that depend on the data count the samples of ``train``
        (default: the training split). ``transfer=True`` marks ``train`` as an unlabeled transfer set:
        the terms that read labels are left out. An objective with no term on the student's logits is
        refused (its classifier would stay random) unless ``head_from_probe`` (the caller fits the
        classifier). Any problem is a ConfigError naming the method (and ``context``, e.g. the strategy).
        """
        train = data.train if train is None else train
        method = method or self.config.distill.method
        where = f"distill (method {method!r}{', ' + context if context else ''})"
        specs = list(terms) if terms is not None else self.config.distill.term_specs(method, extend)
        if transfer:
            specs = [s for s in specs if not _uses_target(s)]
            if not specs:
                raise ConfigError(f"{where}: the method has only label terms, but the transfer set has no labels")
        elif train.y is None:
            for s in specs:
                if _uses_target(s):
                    raise ConfigError(f"{where}: term {_loss_name(s)} needs labels, but the training data have none")
        elif train.y.dim() == 1 and not train.y.is_floating_point() and (unlabeled := int((train.y == NO_LABEL).sum())):
            for s in specs:
                if _uses_target(s) and not _skips_unlabeled(s):
                    raise ConfigError(
                        f"{where}: term {_loss_name(s)} needs a label on every row, but {unlabeled:,} of the {len(train):,} training rows "
                        "have none (a transfer set); use a method whose label term is CE (e.g. kd)"
                    )
        try:
            teacher_probe = data.train.x_teacher[:PROBE] if data.train.x_teacher is not None else None  # paired: the teacher's own inputs
            objective = build_objective(specs, student, teacher, data.train.x[:PROBE], n_data=len(train), seed=self.seed, teacher_probe_x=teacher_probe)
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{where}: {err.args[0]}") from None
        if not head_from_probe and LOGITS not in objective.student_taps:
            raise ConfigError(
                f"{where}: no term reads the student's logits ({', '.join(objective.names)}), so its classifier would never learn; "
                "add a label or logit term (CE, KD) to distill.terms, or use strategy self_supervised (its linear probe becomes the classifier)"
            )
        return objective

    # ------------------------------------------------------------------------------------- training

    def teacher_outputs(self, teacher: nn.Module, objective: Objective, train: Split, augment: Augment) -> TeacherOutputs:
        """The teacher's outputs over ``train`` that ``objective`` reads: the cheapest source the
        ``cache`` section allows (exact cache, pre-drawn views, or a forward per batch); ``.info`` says which.
        Paired data: the teacher sees its own inputs ``train.x_teacher``, un-augmented."""
        outputs = teacher_outputs(
            teacher, train.x, augment, objective.teacher_taps, settings=self.config.cache.settings(self.seed), temperature=objective.temperature,
            exact_logits=objective.needs_exact_logits, teacher_x=train.x_teacher,
        )  # fmt: skip
        info = outputs.info
        if info["kind"] != "online":
            unit = "sentences" if is_tokens(train.teacher_x) else "inputs"
            where = "loaded from disk" if info["from_disk"] else f"computed in {info['seconds']} s ({info['inputs']:,} {unit}, {info['inputs_per_second']:,.0f} {unit}/s)"
            self.say(f"teacher outputs: {info['kind']} cache, {info['bytes']:,} bytes, {where}")
        return outputs

    def fit(
        self,
        name: str,
        model: nn.Module,
        data: Dataset,
        objective: Objective,
        cfg: ModelConfig,
        augment: Augment,
        outputs: Any = None,
        seed: int | None = None,
    ) -> FitResult:
        """Train ``model`` (moved to the device) on ``data.train`` with ``objective``: the one loop,
        its epochs logged under ``name`` and checkpointed. ``outputs`` are the teacher's (or None)."""
        model.to(self.device)
        tensorboard = self.config.logging.tensorboard and self.writes
        with epoch_reporter(self.console, name, cfg.epochs) as reporter, epoch_scalars(tensorboard, self.run_dir.path, name) as scalars:

            def on_epoch(record: EpochRecord) -> None:
                if self.writes:
                    self.run_dir.log_epoch(name, record.as_dict())
                    scalars(record)
                reporter.on_epoch(record)

            return fit(
                model, data.train, data.val, objective, cfg.settings(), seed=self.seed if seed is None else seed, teacher=outputs, augment=augment,
                on_epoch=on_epoch, on_batch=reporter.on_batch, dist=self.dist, checkpoint=self.checkpoints.fit(name),
            )  # fmt: skip

    def record(
        self,
        name: str,
        role: str,
        method: str,
        model: nn.Module,
        data: Dataset,
        cfg: ModelConfig,
        result: FitResult | None,
        **details: Any,
    ) -> None:
        """Save ``model``'s weights as ``name``, measure it on ``data.test`` and add its row to the table.
        ``details`` go into the row as they are (``teacher_outputs=...``)."""
        self.models[name] = model
        if not self.writes:  # weights, measurements and test accuracy: rank 0's (the models are identical)
            return
        path = save_weights(model, self.run_dir.weights(name), metadata={"arch": cfg.arch, "role": role, "method": method})
        measured = measure(model, timing_input(data), runtime="torch", latency_repeats=self.config.measure.latency_repeats, throughput_repeats=self.config.measure.throughput_repeats)
        measured.update(
            accuracy=accuracy(model, data.test.x, data.test.y),
            val_accuracy=accuracy(model, data.val.x, data.val.y) if len(data.val) else float("nan"),
            size_bytes=path.stat().st_size,
        )
        text = getattr(data, "text", None)
        if text is not None:  # what a served sentence costs before the model: the tokenizer, on the same typical sentence
            tokenize_ms = tokenize_latency_ms(text)
            measured.update(tokenize_ms_b1=round(tokenize_ms, 4), latency_ms_b1_text=round(measured["latency_ms_b1"] + tokenize_ms, 4))
        self.results.append(ModelResult(name, role, method, cfg.arch, self.seed, path.name, file_sha256(path), measured, fit=result, details=details))

    def annotate(self, name: str, **details: Any) -> None:
        """Add ``details`` to the row ``name`` already in the table (a KeyError if there is none)."""
        if not self.writes:
            return
        rows = [r for r in self.results if r.name == name]
        if not rows:
            raise KeyError(f"no model {name!r} in this run's table; recorded: {', '.join(r.name for r in self.results)}")
        rows[-1].details.update(details)

    def save_objective(self, name: str, objective: Objective) -> None:
        """Connectors and the losses' own parameters (not the student's) go beside ``name``'s weights."""
        params = dict(objective.named_parameters())
        if params and self.writes:
            save_tensors(params, self.run_dir.path / f"{name}.objective.safetensors")

    def distil(
        self,
        name: str,
        method: str,
        student: nn.Module,
        cfg: ModelConfig,
        teacher: nn.Module,
        objective: Objective,
        data: Dataset,
        augment: Augment,
        *,
        role: str = "student",
        seed: int | None = None,
        outputs: TeacherOutputs | None = None,
    ) -> FitResult:
        """The distillation step: the teacher's outputs (``outputs`` when the caller already has
        them), the fit, the row, the objective's parameters saved."""
        teacher.to(self.device)
        outputs = outputs if outputs is not None else self.teacher_outputs(teacher, objective, data.train, augment)
        result = self.fit(name, student, data, objective, cfg, augment, outputs, seed=seed)
        self.record(name, role, method, student, data, cfg, result, teacher_outputs=outputs.info)
        self.save_objective(name, objective)
        return result

    def on_device(self, data: Dataset) -> Dataset:
        """``data`` with train, val and test on the session's device. The unlabeled inputs (if any) stay on
        the CPU: the strategies that use them build their own training split from them and move that."""
        return replace(data, train=data.train.to(self.device), val=data.val.to(self.device), test=data.test.to(self.device))


def _uses_target(item: TermSpec | Term) -> bool:
    loss = item.loss if isinstance(item, Term) else LOSSES.get(item.loss)
    return bool(getattr(loss, "uses_target", False))


def _skips_unlabeled(item: TermSpec | Term) -> bool:
    loss = item.loss if isinstance(item, Term) else LOSSES.get(item.loss)
    return bool(getattr(loss, "skips_unlabeled", False))


def _loss_name(item: TermSpec | Term) -> str:
    return item.name if isinstance(item, Term) else item.loss
