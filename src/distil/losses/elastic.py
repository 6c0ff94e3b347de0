"""The elastic capacity loss: a feature match whose strictness a threshold trades for sparsity.

The teacher side is detached: it is a fixed target, never trained through the loss.
"""

from __future__ import annotations

import torch

from distil.losses.base import Loss, as_scalar, check_same_shape
from distil.losses.registry import register_loss


@register_loss("ECL")
class ECL(Loss):
    """Elastic capacity loss, from the project's design notes.

    Source: a formula in an unreviewed article (the project's design notes), not a peer-reviewed
    paper; there are no published results to reproduce for it. With ``h_s``, ``h_t`` one sample's
    student and teacher feature maps, flattened (``‖·‖_F`` the Frobenius norm of the map, ``‖·‖₁``
    the sum of its absolute values) and the threshold ``t ∈ [0, 1]``::

        ECL = (1−t)²·‖h_s − h_t‖²_F / sqrt((1−t)²·‖h_t‖²_F + t²)  +  λ·‖h_s‖₁

    computed per sample and averaged over the batch; λ = ``l1_weight`` (1, the formula as written).

    * t = 0: ``‖h_s − h_t‖²_F / ‖h_t‖_F + λ·‖h_s‖₁``, a squared error relative to the size of the
      teacher's map, plus the L1 term.
    * t = 1: only ``λ·‖h_s‖₁`` is left, a sparsity penalty on the student that ignores the teacher.
    * between, the match term fades as t grows (its denominator tends to t, its factor (1−t)² to 0).

    The L1 term is a sum over the feature's elements, so it grows with the feature's size while the
    match term is relative; scale it with ``l1_weight`` (0 drops it). The student must have the
    teacher's shape: where the taps differ the engine puts a connector on the student side, and
    ``h_s`` is then the connector's output, so the L1 term makes the *mapped* feature sparse (a
    connector can meet it by shrinking its own weights). For a sparsity penalty on the student's own
    features, tap layers of equal shape on both sides. At t = 0 a teacher map of zeros makes the
    denominator 0: it is clamped to at least ``sqrt(eps)`` (eps = 1e-12), so the value is large but finite.
    """

    needs_same_shape = True

    def __init__(self, threshold: float = 0.5, l1_weight: float = 1.0, eps: float = 1e-12) -> None:
        super().__init__()
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if l1_weight < 0:
            raise ValueError(f"l1_weight must be ≥ 0, got {l1_weight}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.threshold = float(threshold)
        self.l1_weight = float(l1_weight)
        self.eps = float(eps)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("ECL", student, teacher)
        if student.dim() == 0:
            raise ValueError("ECL needs features with a batch dimension, got a scalar")
        s = student.reshape(student.shape[0], -1)
        t = teacher.detach().reshape(teacher.shape[0], -1)
        keep = (1.0 - self.threshold) ** 2
        distance = (s - t).pow(2).sum(dim=1)
        scale = torch.sqrt((keep * t.pow(2).sum(dim=1) + self.threshold**2).clamp_min(self.eps))
        per_sample = keep * distance / scale + self.l1_weight * s.abs().sum(dim=1)
        return as_scalar(per_sample.mean())
