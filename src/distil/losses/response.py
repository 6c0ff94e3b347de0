"""Losses on the models' outputs (logits): the task loss and Hinton's knowledge distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distil.losses.base import Loss, as_scalar
from distil.losses.registry import register_loss


@register_loss("CE")
class CE(Loss):
    """Cross-entropy with the labels (the task loss), optionally with label smoothing.

    ``CE(s, y) = -mean_i log softmax(s_i)[y_i]``; with smoothing ε the target is
    ``(1-ε)·onehot(y) + ε/K`` (Szegedy et al. 2016).
    """

    uses_teacher = False
    uses_target = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None, *, target: torch.Tensor) -> torch.Tensor:
        return as_scalar(F.cross_entropy(student, target, label_smoothing=self.label_smoothing))


@register_loss("KD")
class KD(Loss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    ``KD(s, t) = T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch. The T² factor keeps
    the gradient's magnitude independent of T (the soft-target gradient scales as 1/T²), so the
    classic objective is ``α·KD + (1-α)·CE``: ``KD(T) * α + CE() * (1 - α)``.
    """

    def __init__(self, T: float = 4.0) -> None:
        super().__init__()
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        self.T = float(T)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        log_p_s = F.log_softmax(student / self.T, dim=1)
        log_p_t = F.log_softmax(teacher / self.T, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)
        return as_scalar(kl * self.T**2)
