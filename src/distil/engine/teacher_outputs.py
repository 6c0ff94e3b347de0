"""Where the teacher's outputs come from during distillation: a cache, or a forward per batch.

The teacher is frozen, so for unaugmented inputs its outputs are a fixed function of the sample:
computing them once costs one inference pass instead of one per epoch (on a 2-core CPU a teacher
forward over Fashion-MNIST costs about ten times a small student's training epoch). With
augmentation every view is new, so the teacher runs on each batch.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from distil.engine.evaluate import INFERENCE_BATCH, predict_logits


class TeacherOutputs(Protocol):
    """Teacher outputs for the batch made of training samples ``index`` whose (augmented) inputs are ``x``."""

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


class CachedTeacher:
    """Logits of every training sample, computed once in eval mode; memory: N × classes floats."""

    def __init__(self, teacher: nn.Module, x: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> None:
        self.logits = predict_logits(teacher, x, batch_size=batch_size)

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.logits[index]}

    @property
    def nbytes(self) -> int:
        return self.logits.numel() * self.logits.element_size()


class OnlineTeacher:
    """A no-grad, eval-mode teacher forward on every batch (needed when inputs are augmented)."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"logits": self.teacher(x)}


def teacher_outputs(teacher: nn.Module, train_x: torch.Tensor, augmented: bool) -> CachedTeacher | OnlineTeacher:
    """The cache when the inputs the student sees are the stored ones, the online teacher otherwise."""
    return OnlineTeacher(teacher) if augmented else CachedTeacher(teacher, train_x)
