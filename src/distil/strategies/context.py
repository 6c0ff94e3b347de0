"""What a strategy works with: the run session's steps, bound to the run's data, teacher and augmentation.

Strategies never copy the training loop: they call :meth:`Context.fit` (the session's ``fit``, with
its logging, progress and checkpoints) with other students, teachers, objectives or training splits,
:meth:`Context.distil` for an ordinary distillation step, and :meth:`Context.record` to add a row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from distil.config import ExperimentConfig, ModelConfig, StrategyOptions
from distil.data import Augment, Dataset, Split
from distil.engine.objective import Objective, TermSpec, task_objective
from distil.engine.teacher_sources import TeacherOutputs
from distil.engine.trainer import FitResult
from distil.losses import Term
from distil.session import RunSession


@dataclass
class Context:
    """The session, the data and the teacher. ``prepare`` sees them on the CPU with the teacher
    untrained; the runner sees them on the device, the teacher trained or loaded."""

    session: RunSession
    data: Dataset
    teacher: nn.Module | None
    augment: Augment

    @property
    def config(self) -> ExperimentConfig:
        return self.session.config

    @property
    def options(self) -> Any:
        """The ``strategy:`` section, validated by the strategy's own options model."""
        options: StrategyOptions = self.session.config.strategy
        return options

    @property
    def seed(self) -> int:
        return self.session.seed

    @property
    def device(self) -> torch.device:
        return self.session.device

    @property
    def models(self) -> dict[str, nn.Module]:
        """The models recorded so far in this run, by name (``student_scratch``, ...)."""
        return self.session.models

    def say(self, text: str) -> None:
        self.session.say(text)

    def build(self, cfg: ModelConfig, seed: int | None = None, data: Dataset | None = None, **kwargs: Any) -> nn.Module:
        """``cfg``'s model with the initial weights ``seed`` gives (default: the run's seed), for ``data``'s shapes."""
        return self.session.build(cfg, data or self.data, seed, **kwargs)

    def objective(
        self, student: nn.Module, teacher: nn.Module | None, *, transfer: Split | None = None, terms: list[TermSpec | Term] | None = None, train: Split | None = None,
        head_from_probe: bool = False, data: Dataset | None = None,
    ) -> Objective:  # fmt: skip
        """``distill.method`` with ``distill.terms`` (or ``terms``) between ``student`` and ``teacher``.

        ``transfer``: the unlabeled split the student will train on instead of the training split;
        the terms that read labels are left out (an objective left without terms is a config error).
        ``train``: a labelled split the student will train on instead (its labels checked, its samples counted).
        ``head_from_probe``: the strategy fits the student's classifier itself (a linear probe), so an
        objective without a term on the logits is fine.
        ``data``: instead of the run's data, e.g. ``ctx.data.for_student()`` when the teacher is a student
        on paired data (a teacher assistant teaching the next one).
        """
        split = transfer if transfer is not None else train
        return self.session.objective(
            student, teacher, data or self.data, terms=terms, train=split, transfer=transfer is not None, context=f"strategy {self.options.name}", head_from_probe=head_from_probe
        )

    def fit(
        self, name: str, model: nn.Module, objective: Objective, cfg: ModelConfig, *, outputs: Any = None, train: Split | None = None,
        data: Dataset | None = None, seed: int | None = None, augment: Augment | None = None,
    ) -> FitResult:  # fmt: skip
        """The session's ``fit`` (logged under ``name``); ``train`` replaces the training split."""
        data = data or self.data
        if train is not None:
            data = replace(data, train=train)
        return self.session.fit(name, model, data, objective, cfg, augment or self.augment, outputs, seed=seed)

    def train_on_labels(self, name: str, model: nn.Module, cfg: ModelConfig, **kw: Any) -> FitResult:
        return self.fit(name, model, task_objective(cfg.label_smoothing), cfg, **kw)

    def teacher_outputs(self, teacher: nn.Module, objective: Objective, train: Split | None = None) -> TeacherOutputs:
        """Cached (exact) or online teacher outputs over ``train`` (default: the training split)."""
        return self.session.teacher_outputs(teacher, objective, self.data.train if train is None else train, self.augment)

    def record(self, name: str, role: str, method: str, model: nn.Module, cfg: ModelConfig, result: FitResult | None, *, data: Dataset | None = None, **details: Any) -> None:
        self.session.record(name, role, method, model, data or self.data, cfg, result, **details)

    def distil(
        self, name: str, method: str, student: nn.Module, cfg: ModelConfig, teacher: nn.Module, objective: Objective, *,
        role: str = "student", train: Split | None = None, seed: int | None = None, data: Dataset | None = None,
    ) -> FitResult:  # fmt: skip
        """The session's distillation step (teacher outputs, fit, record, objective saved), on ``train`` if
        given; on ``data`` instead of the run's data if given (``ctx.data.for_student()``: a student teaches)."""
        data = data or self.data
        data = data if train is None else replace(data, train=train)
        return self.session.distil(name, method, student, cfg, teacher, objective, data, self.augment, role=role, seed=seed)

    def annotate(self, name: str, **details: Any) -> None:
        """Add ``details`` to the recorded row ``name`` (e.g. a probe's scores of the run's teacher)."""
        self.session.annotate(name, **details)

    def save_objective(self, name: str, objective: Objective) -> None:
        """Connectors and loss parameters of ``name``'s objective, beside its weights (when it has any)."""
        self.session.save_objective(name, objective)
