"""What every distillation loss shares: the ``Loss`` base class and the ``Term`` that weights it.

A loss is pure tensor maths: ``forward(student, teacher, *, target=None)`` returns a scalar. A
:class:`Term` says where the loss reads its inputs (``"logits"`` or, later, a tapped layer), how much
it weighs, and is what an objective sums. ``KD(T=4) * 0.9`` builds a term, so a method is a value
you compose rather than a branch in a training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn


class Loss(nn.Module):
    """Base class of distil's losses.

    Subclasses implement ``forward(student, teacher, *, target=None) -> scalar tensor``.
    ``uses_teacher`` is False for losses that read only the labels (the task loss), so a run whose
    terms all say False never runs the teacher. ``uses_target`` is True for losses that need labels.
    ``uses_index`` is True for losses that also need each sample's position in the training set
    (CRD's per-sample memory); they take it as ``forward(..., index=LongTensor[B])``.

    Losses never send gradient into the teacher: they ``.detach()`` the teacher side.
    """

    name: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = True
    uses_target: ClassVar[bool] = False
    #: a label term that leaves out rows labelled -100 (a transfer set's unlabeled rows beside labelled ones)
    skips_unlabeled: ClassVar[bool] = False
    uses_index: ClassVar[bool] = False
    #: elementwise losses compare tensors of one shape; the engine puts a connector on the student side
    needs_same_shape: ClassVar[bool] = False
    #: the loss reads every teacher logit as it is (a discriminator), so the teacher's logits may not come
    #: from the view cache, which keeps the top-k and spreads the rest evenly
    needs_exact_logits: ClassVar[bool] = False
    #: a label term that also reads soft targets (float ``(B, C)`` rows of class probabilities): the labels
    #: of mixed inputs (mixup, cutmix), which carry two classes each
    soft_targets: ClassVar[bool] = False

    def __mul__(self, weight: float) -> Term:
        return Term(self) * weight

    __rmul__ = __mul__

    def between(self, student: str, teacher: str | None = None) -> Term:
        """A term reading ``student``'s tapped output and ``teacher``'s (the same path by default)."""
        return Term(self).between(student, teacher)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


@dataclass(frozen=True)
class Term:
    """One weighted term of an objective: ``weight * loss(student[student_key], teacher[teacher_key])``."""

    loss: Loss
    weight: float = 1.0
    student: str = "logits"
    teacher: str = "logits"
    #: factor on the weight as a function of training progress in [0, 1) (see ``losses.schedules``)
    schedule: Callable[[float], float] | None = None

    def __mul__(self, weight: float) -> Term:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"a term's weight must be a number, got {weight!r}")
        return replace(self, weight=self.weight * float(weight))

    __rmul__ = __mul__

    def between(self, student: str, teacher: str | None = None) -> Term:
        return replace(self, student=student, teacher=teacher or student)

    def scheduled(self, schedule: Callable[[float], float]) -> Term:
        return replace(self, schedule=schedule)

    def weight_at(self, progress: float) -> float:
        return self.weight * (self.schedule(progress) if self.schedule is not None else 1.0)

    @property
    def name(self) -> str:
        return self.loss.name or type(self.loss).__name__.lower()


def as_scalar(value: torch.Tensor) -> torch.Tensor:
    """Check that a loss produced a scalar; a silent broadcast would train on the wrong quantity."""
    if value.dim() != 0:
        raise ValueError(f"a loss must return a scalar, got shape {tuple(value.shape)}")
    return value


def check_same_shape(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Elementwise losses need equal shapes; broadcasting one onto the other would be silently wrong."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"{loss} needs student and teacher of the same shape (project the student with a connector), "
            f"got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )


def check_same_batch(loss: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Relational losses compare samples with samples, so both sides must hold the same batch."""
    if student.dim() == 0 or teacher.dim() == 0 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{loss} needs student and teacher batches of the same size, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
