"""Where the teacher's outputs come from during distillation: a cache, or a forward per batch.

The teacher is frozen, so for unaugmented inputs its outputs — logits and any tapped layer — are a
fixed function of the sample: computing them once costs one inference pass instead of one per epoch
(on a 2-core CPU a teacher forward over Fashion-MNIST costs about ten times a small student's
training epoch). With augmentation every view is new, so the teacher runs on each batch; it does the
same when the cached tensors would exceed the memory budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn

from distil.engine.evaluate import INFERENCE_BATCH
from distil.engine.taps import LOGITS, Taps, probe_shapes

#: Default cap on what the exact cache may hold (all tapped teacher tensors of the training split).
CACHE_BYTES = 4 * 1024**3


class TeacherOutputs(Protocol):
    """Teacher outputs for the batch made of training samples ``index`` whose (augmented) inputs are ``x``."""

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


def _frozen(teacher: nn.Module) -> nn.Module:
    return teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)


class CachedTeacher:
    """Every requested teacher output for every training sample, computed once in eval mode."""

    def __init__(self, teacher: nn.Module, x: torch.Tensor, taps: Iterable[str] = (LOGITS,), batch_size: int = INFERENCE_BATCH) -> None:
        teacher = _frozen(teacher)
        taps = set(taps) | {LOGITS}
        chunks: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
        with torch.no_grad(), Taps(teacher, taps) as tapped:
            for i in range(0, len(x), batch_size):
                for k, v in tapped.forward(x[i : i + batch_size]).items():
                    chunks[k].append(v.contiguous())
        self.outputs = {k: torch.cat(v) for k, v in chunks.items()}

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.outputs.items()}

    @property
    def logits(self) -> torch.Tensor:
        return self.outputs[LOGITS]

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.outputs.values())


class OnlineTeacher:
    """A no-grad, eval-mode teacher forward on every batch (needed when inputs are augmented)."""

    def __init__(self, teacher: nn.Module, taps: Iterable[str] = (LOGITS,)) -> None:
        self.teacher = _frozen(teacher)
        self.taps = set(taps) | {LOGITS}

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad(), Taps(self.teacher, self.taps) as tapped:
            return tapped.forward(x)


def cache_bytes(teacher: nn.Module, x: torch.Tensor, taps: Iterable[str]) -> int:
    """What caching ``taps`` for all of ``x`` would take, from the shapes of a probe batch of one."""
    shapes = probe_shapes(teacher, x[:1], set(taps) | {LOGITS})
    return len(x) * sum(math.prod(s[1:]) * 4 for s in shapes.values())


def teacher_outputs(
    teacher: nn.Module, train_x: torch.Tensor, augmented: bool, taps: Iterable[str] = (LOGITS,), max_bytes: int = CACHE_BYTES
) -> CachedTeacher | OnlineTeacher:
    """The exact cache when the student sees the stored inputs and the cache fits, the online teacher otherwise."""
    taps = set(taps)
    if augmented or cache_bytes(teacher, train_x, taps) > max_bytes:
        return OnlineTeacher(teacher, taps)
    return CachedTeacher(teacher, train_x, taps)
