"""Paired inputs made by a declared transform: the student's view derived from the teacher's input.

Cross-modal distillation (Gupta et al. 2016, "Cross Modal Distillation for Supervision Transfer";
Tian et al. 2020, CRD §4.3) trains a student on one modality with a teacher trained on another
modality of the *same samples*. When the student's modality is a degraded copy of the teacher's — a
cheap low-resolution sensor next to a camera — it can be derived instead of collected:
:class:`StudentView` turns each teacher input into what the sensor would record,

    x_student = avg_pool_k(x_teacher) + σ · ε,    ε ~ N(0, 1) drawn once per sample (seeded),

``k × k`` average pooling (a sensor whose pixels each integrate ``k × k`` of the camera's; ``k`` along
the time axis of signals) and additive Gaussian read noise in normalized units. The noise is part of
the sample, not an augmentation: drawn once, from a generator seeded by ``seed`` and the split, so the
test inputs are the same for every run seed.

Average pooling commutes with the per-channel normalization ``(raw − mean) / std``, so the derived
inputs are normalized like the raw sensor values would be with the dataset's statistics: the
dataset's ``mean``/``std`` hold for both sides (only the noise is added after).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from distil.data.split import Dataset, Pairing, Split
from distil.errors import DataError

#: Split order, for the noise generators' seeds.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class StudentView:
    """A low-resolution, noisy sensor's view of each input (see the module docstring)."""

    downsample: int = 1
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise DataError(f"student_view.downsample must be an integer >= 1 (the pooling factor), got {self.downsample!r}")
        if not self.noise >= 0:
            raise DataError(f"student_view.noise must be >= 0 (the noise's std in normalized units), got {self.noise!r}")

    def describe(self, teacher_shape: tuple[int, ...], student_shape: tuple[int, ...]) -> str:
        k = self.downsample
        window = f"{k}×{k}" if len(teacher_shape) == 3 else f"{k}-step"
        parts = [f"{window} average pooling ({_shape(teacher_shape)} → {_shape(student_shape)})"] if k > 1 else []
        if self.noise > 0:
            parts.append(f"Gaussian noise σ={self.noise:g} (normalized units, fixed per sample, seed {self.seed})")
        return ", ".join(parts) or "the teacher's input as it is"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The view of normalized inputs ``x`` ``(N, C, H, W)`` or ``(N, C, L)``; ``generator`` draws the noise."""
        if x.dim() not in (3, 4) or not x.is_floating_point():
            raise DataError(f"student_view works on float inputs of shape (N, C, H, W) or (N, C, L), got {tuple(x.shape)} {x.dtype}")
        k = self.downsample
        if min(x.shape[2:]) < k:
            raise DataError(f"student_view.downsample: {k} is larger than the inputs ({'×'.join(map(str, x.shape[1:]))}); use at most {min(x.shape[2:])}")
        if k > 1:
            x = F.avg_pool2d(x, k) if x.dim() == 4 else F.avg_pool1d(x, k)
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x.contiguous()


def with_student_view(data: Dataset, view: StudentView, *, teacher: str = "original input", student: str = "derived view") -> Dataset:
    """``data`` paired: each split's inputs become the teacher's (``x_teacher``) and ``view`` of them the student's ``x``.

    ``teacher``/``student`` name the two modalities for the table and report. Text data (token ids)
    and data already paired are refused (DataError).
    """
    if data.text is not None:
        raise DataError(f"student_view derives a lower-resolution view of images or signals, but {data.name!r} is text (token ids); remove it")
    if data.paired:
        raise DataError(f"student_view: {data.name!r} already carries the teacher's inputs (x_teacher); remove student_view or the teacher's inputs")
    splits: dict[str, Split] = {}
    for k, name in enumerate(SPLITS):
        split: Split = getattr(data, name)
        generator = torch.Generator().manual_seed(view.seed * len(SPLITS) + k)
        splits[name] = Split(view(split.x.cpu(), generator), split.y, split.x)
    student_shape = tuple(int(d) for d in splits["train"].x.shape[1:])
    pairing = Pairing(data.input_shape, data.mean, data.std, teacher=teacher, student=student, derived=view.describe(data.input_shape, student_shape))
    return replace(data, **splits, input_shape=student_shape, pairing=pairing)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape[1:]))
