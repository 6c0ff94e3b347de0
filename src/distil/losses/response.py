"""Losses on the models' outputs (logits): the task loss, Hinton's KD and its descendants.

Every loss here detaches the teacher: the teacher is a fixed target, never trained through the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distil.losses.base import Loss, as_scalar, check_same_shape
from distil.losses.registry import register_loss

#: the label of a row without one (``F.cross_entropy``'s ``ignore_index``; ``distil.data.tokens.IGNORE``)
NO_LABEL = -100


@register_loss("CE")
class CE(Loss):
    """Cross-entropy with the labels (the task loss), optionally with label smoothing.

    ``CE(s, y) = -mean_i log softmax(s_i)[y_i]``; with smoothing ε the target is
    ``(1-ε)·onehot(y) + ε/K`` (Szegedy et al. 2016). Rows labelled ``-100`` (no label: an unlabeled
    row of a semi-supervised batch) are left out of the sum and of the count, and a batch without
    any label gives 0 — not the 0/0 = NaN of ``F.cross_entropy``'s mean.

    Soft targets (float ``(B, C)``, rows of class probabilities: the labels ``λ·onehot(y_i) + (1 − λ)·onehot(y_j)``
    of mixed inputs): ``CE = -mean_i Σ_c q_ic log softmax(s_i)_c``, smoothed as ``(1-ε)·q + ε/K``;
    an all-zero row carries no label and is left out like a ``-100``.
    """

    uses_teacher = False
    uses_target = True
    skips_unlabeled = True
    soft_targets = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None, *, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():
            labelled = target.sum(1, keepdim=True) > 0
            soft = (1 - self.label_smoothing) * target + labelled * (self.label_smoothing / student.shape[1])
            total = -(soft * F.log_softmax(student, dim=1)).sum()
            return as_scalar(total / labelled.sum().clamp_min(1))
        total = F.cross_entropy(student, target, ignore_index=NO_LABEL, label_smoothing=self.label_smoothing, reduction="sum")
        return as_scalar(total / (target != NO_LABEL).sum().clamp_min(1))


@register_loss("KD")
class KD(Loss):
    """Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

    ``KD(s, t) = T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch. The T² factor keeps
    the gradient's magnitude independent of T (the soft-target gradient scales as 1/T²), so the
    classic objective is ``α·KD + (1-α)·CE``: ``KD(T) * α + CE() * (1 - α)``.
    """

    def __init__(self, T: float = 4.0) -> None:
        super().__init__()
        self.T = _check_temperature(T)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        return as_scalar(_soft_kl(student, teacher.detach(), self.T) * self.T**2)


def _soft_kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """``KL(softmax(t/T) ‖ softmax(s/T))`` summed over classes, averaged over the batch."""
    log_p_s = F.log_softmax(student / T, dim=1)
    log_p_t = F.log_softmax(teacher / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def _check_temperature(T: float) -> float:
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    return float(T)


@register_loss("DKD")
class DKD(Loss):
    """Zhao, Cui, Song, Qiu & Liang 2022, "Decoupled Knowledge Distillation" (CVPR).

    With ``p = softmax(z/T)`` and label ``y``, KD splits into a *target-class* part on the binary
    distribution ``b = [p_y, 1 − p_y]`` and a *non-target* part on ``p̂ = softmax(z_{¬y}/T)`` (the
    distribution over the other classes): ``KD = TCKD + (1 − p_y^t)·NCKD``. DKD frees the two weights::

        DKD = T² · (α · KL(b^t ‖ b^s) + β · KL(p̂^t ‖ p̂^s)),   averaged over the batch

    Defaults are the paper's CIFAR-100 setting α=1, β=8, T=4 (the T² factor is the authors'
    implementation, as in KD; they also ramp the term in over the first 20 epochs, which is the
    trainer's schedule, not this loss). Needs the labels.
    """

    uses_target = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.T = _check_temperature(T)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor) -> torch.Tensor:
        check_same_shape("DKD", student, teacher)
        if student.dim() != 2 or student.shape[1] < 2:
            raise ValueError(f"DKD needs logits of shape (batch, classes ≥ 2), got {tuple(student.shape)}")
        tckd_s, nckd_s = _decouple(student / self.T, target)
        tckd_t, nckd_t = _decouple(teacher.detach() / self.T, target)
        tckd = F.kl_div(tckd_s, tckd_t, reduction="batchmean", log_target=True)
        nckd = F.kl_div(nckd_s, nckd_t, reduction="batchmean", log_target=True)
        return as_scalar((self.alpha * tckd + self.beta * nckd) * self.T**2)


def _decouple(z: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``[target, not target]`` and of the non-target classes among themselves.

    Worked in log space (logsumexp) so a confident prediction gives ``log(1 − p_y)`` without cancellation.
    """
    b, c = z.shape
    is_target = F.one_hot(target, c).bool()
    z_target = z[is_target]  # (b,)
    z_other = z[~is_target].view(b, c - 1)
    lse_all = torch.logsumexp(z, dim=1)
    lse_other = torch.logsumexp(z_other, dim=1)
    binary = torch.stack([z_target - lse_all, lse_other - lse_all], dim=1)
    return binary, z_other - lse_other.unsqueeze(1)


@register_loss("DIST")
class DIST(Loss):
    """Huang, You, Wang, Qian & Xu 2022, "Knowledge Distillation from A Stronger Teacher" (NeurIPS).

    Matches *relations* rather than values, via the Pearson correlation ρ of ``Y = softmax(Z/τ)``:
    inter-class (each sample's class scores) and intra-class (each class's scores over the batch)::

        DIST = τ² · (β · (1 − mean_i ρ(Y^s_i,:, Y^t_i,:)) + γ · (1 − mean_j ρ(Y^s_:,j, Y^t_:,j)))

    ``ρ(a, b) = ⟨a − ā, b − b̄⟩ / (‖a − ā‖·‖b − b̄‖ + 1e-8)``; a constant vector has ρ = 0. Defaults are the
    paper's β = γ = 1, τ = 1. Invariant to shifts and (positive) scales of the probabilities, so it
    asks the student for the teacher's ranking, not its exact confidences.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.tau = _check_temperature(tau)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("DIST", student, teacher)
        y_s = F.softmax(student / self.tau, dim=1)
        y_t = F.softmax(teacher.detach() / self.tau, dim=1)
        inter = 1 - _pearson(y_s, y_t).mean()
        intra = 1 - _pearson(y_s.t(), y_t.t()).mean()
        return as_scalar((self.beta * inter + self.gamma * intra) * self.tau**2)


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Pearson correlation; ``vector_norm`` has a zero (not NaN) gradient at a constant row."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    return (a * b).sum(dim=1) / (norms + eps)


@register_loss("LSKD")
class LSKD(Loss):
    """Sun, Ren, Li, Wang & Cao 2024, "Logit Standardization in Knowledge Distillation" (CVPR).

    KD on z-scored logits, so the student matches the teacher's logit *relations* rather than their
    range: with ``Z(z) = (z − mean(z)) / (std(z) + 1e-7)`` per sample (std with Bessel's correction, as
    the authors' code),

        LSKD = T² · KL(softmax(Z(t)/T) ‖ softmax(Z(s)/T)),   averaged over the batch

    Default T = 2, the authors' base temperature on CIFAR-100 (they weigh the term 9 there,
    ``--kd-weight 9``). Invariant to any shift and positive scale of either side's logits.
    """

    def __init__(self, T: float = 2.0) -> None:
        super().__init__()
        self.T = _check_temperature(T)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("LSKD", student, teacher)
        kl = _soft_kl(_standardize(student), _standardize(teacher.detach()), self.T)
        return as_scalar(kl * self.T**2)


def _standardize(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row; a constant row becomes zeros (std's gradient at 0 is zero in PyTorch, not NaN)."""
    if z.shape[1] < 2:
        return z - z  # one logit: nothing to standardise, and softmax over one class is constant anyway
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)


@register_loss("LogitMSE")
class LogitMSE(Loss):
    """Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?" (NeurIPS): regress the teacher's logits.

    ``LogitMSE(s, t) = mean over all elements of (s − t)²``. It is also the high-temperature limit of
    KD (Hinton et al. 2015: for zero-mean logits, T²·KD → ‖s − t‖² / (2·K) per sample as T → ∞), and
    works unchanged for regression outputs of any shape.
    """

    needs_same_shape = True

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("LogitMSE", student, teacher)
        return as_scalar(F.mse_loss(student, teacher.detach()))
