"""What a strategy works with: the experiment's steps (fit, record, teacher outputs) and its data.

Strategies never copy the training loop: they call :meth:`Context.fit` (the experiment's ``fit``
with its logging and progress) with other students, teachers, objectives or training splits, and
:meth:`Context.record` to add a row to the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from distil.config import ModelConfig
from distil.data import BatchAugment, Dataset, Split
from distil.engine.methods import build_objective
from distil.engine.objective import Objective, task_objective
from distil.engine.trainer import FitResult
from distil.errors import ConfigError
from distil.losses import LOSSES
from distil.models import build_model

if TYPE_CHECKING:
    from distil.experiment import Experiment


@dataclass
class Context:
    """The experiment, its data and its teacher. ``prepare`` sees them on the CPU with the teacher
    untrained; the runner sees them on the device, the teacher trained or loaded."""

    experiment: Experiment
    data: Dataset
    teacher: nn.Module | None
    augment: BatchAugment

    @property
    def config(self):
        return self.experiment.config

    @property
    def options(self) -> Any:
        return self.experiment.config.strategy

    @property
    def seed(self) -> int:
        return self.experiment.config.seed

    @property
    def device(self) -> torch.device:
        return self.experiment.device

    def say(self, text: str) -> None:
        self.experiment.console.print(text, highlight=False)

    def build(self, cfg: ModelConfig, seed: int | None = None, data: Dataset | None = None, **kwargs: Any) -> nn.Module:
        """``cfg``'s model with the initial weights ``seed`` gives (default: the run's seed), for ``data``'s shapes."""
        data = data or self.data
        torch.manual_seed(self.seed if seed is None else seed)
        return build_model(cfg.arch, input_shape=data.input_shape, num_classes=data.num_classes, **{**cfg.kwargs, **kwargs})

    def objective(self, student: nn.Module, teacher: nn.Module | None, *, labels: bool = True, n_data: int | None = None) -> Objective:
        """``distill.method`` with ``distill.terms`` between ``student`` and ``teacher``.

        ``labels=False`` (unlabeled transfer sets) keeps only the terms that read no labels; an
        objective left without terms is a config error.
        """
        cfg = self.config
        specs = cfg.distill.term_specs()
        if not labels:
            specs = [s for s in specs if not LOSSES[s.loss].uses_target]
            if not specs:
                raise ConfigError(f"distill: method {cfg.distill.method!r} has only label terms, but the transfer set has no labels")
        try:
            torch.manual_seed(self.seed)
            return build_objective(specs, student, teacher, self.data.train.x[:8], n_data or len(self.data.train))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"distill (method {cfg.distill.method!r}, strategy {self.options.name}): {err.args[0]}") from None

    def fit(
        self, name: str, model: nn.Module, objective: Objective, cfg: ModelConfig, *, outputs=None, train: Split | None = None,
        data: Dataset | None = None, seed: int | None = None, augment: BatchAugment | None = None,
    ) -> FitResult:
        """The experiment's ``fit`` (logged under ``name``); ``train`` replaces the training split."""
        data = data or self.data
        if train is not None:
            data = replace(data, train=train)
        model.to(self.device)
        return self.experiment._fit(name, model, data, objective, cfg, augment or self.augment, outputs, seed=seed)

    def train_on_labels(self, name: str, model: nn.Module, cfg: ModelConfig, **kw: Any) -> FitResult:
        return self.fit(name, model, task_objective(cfg.label_smoothing), cfg, **kw)

    def teacher_outputs(self, teacher: nn.Module, objective: Objective, train: Split | None = None):
        """Cached (exact) or online teacher outputs over ``train`` (default: the training split)."""
        data = self.data if train is None else replace(self.data, train=train)
        return self.experiment._teacher_outputs(teacher, data, objective, self.augment)

    def record(self, name: str, role: str, method: str, model: nn.Module, cfg: ModelConfig, result: FitResult | None, *, data: Dataset | None = None, **extra: Any) -> None:
        self.experiment._record(name, role, method, model, data or self.data, cfg, result, **extra)

    def distil(
        self, name: str, method: str, student: nn.Module, cfg: ModelConfig, teacher: nn.Module, objective: Objective, *,
        role: str = "student", train: Split | None = None, seed: int | None = None,
    ) -> FitResult:
        """One ordinary distillation step: teacher outputs, fit, record, connectors saved."""
        teacher.to(self.device)
        outputs, info = self.teacher_outputs(teacher, objective, train)
        result = self.fit(name, student, objective, cfg, outputs=outputs, train=train, seed=seed)
        self.record(name, role, method, student, cfg, result, teacher_outputs=info)
        self.save_objective(name, objective)
        return result

    def save_objective(self, name: str, objective: Objective) -> None:
        """Connectors and loss parameters of ``name``'s objective, beside its weights (when it has any)."""
        self.experiment._save_objective(name, objective)
