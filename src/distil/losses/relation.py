"""Relational losses: match how the samples of a batch relate to each other, not the features themselves.

Each sample's feature is flattened to a vector, so the student and teacher may have different
shapes and widths: only the batch must agree. Every loss detaches the teacher side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distil.losses.base import Loss, as_scalar, check_same_batch
from distil.losses.registry import register_loss


def _flat(student: torch.Tensor, teacher: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_same_batch(loss, student, teacher)
    return student.flatten(1), teacher.detach().flatten(1)


@register_loss("SP")
class SP(Loss):
    """Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation" (ICCV).

    With Q the (b, ·) matrix of flattened features, the pairwise similarities ``G = Q·Qᵀ`` are
    row-wise L2-normalised, ``G̃_i = G_i / ‖G_i‖₂``, and::

        SP = ‖G̃_s − G̃_t‖_F² / b²

    The paper weighs it γ = 3000 on CIFAR-10.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat(student, teacher, "SP")
        g_s = F.normalize(s @ s.t(), dim=1)
        g_t = F.normalize(t @ t.t(), dim=1)
        return as_scalar((g_s - g_t).pow(2).sum() / s.shape[0] ** 2)


@register_loss("RKD")
class RKD(Loss):
    """Park, Kim, Lu & Cho 2019, "Relational Knowledge Distillation" (CVPR).

    Distance-wise: ``ψ_D(i, j) = ‖x_i − x_j‖₂ / μ`` with μ the mean distance over the pairs i ≠ j.
    Angle-wise: ``ψ_A(i, j, k) = ⟨e_ij, e_ik⟩``, the cosine of the angle at x_i, where
    ``e_ij = (x_j − x_i)/‖x_j − x_i‖₂`` (0 when x_j = x_i). With l_δ the Huber loss (smooth-L1, δ = 1)::

        RKD = w_d · mean_{i,j} l_δ(ψ_D^s, ψ_D^t) + w_a · mean_{i,j,k} l_δ(ψ_A^s, ψ_A^t)

    Defaults w_d = 25, w_a = 50 (the paper). The means run over all b² (b³) index tuples, as the
    authors' code for which those weights were tuned. Memory is O(b²·d) for the difference vectors.
    """

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)

    @staticmethod
    def _relations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        diff = x.unsqueeze(0) - x.unsqueeze(1)  # diff[i, j] = x_j − x_i
        dist = torch.linalg.vector_norm(diff, dim=2)  # zero, not NaN, gradient where two samples coincide
        mean = dist.sum() / max(b * (b - 1), 1)  # the diagonal is zero, so this is the mean over i ≠ j
        unit = diff / torch.where(dist > 0, dist, torch.ones_like(dist)).unsqueeze(2)
        angle = torch.bmm(unit, unit.transpose(1, 2))  # angle[i, j, k] = ⟨e_ij, e_ik⟩
        return dist / mean.clamp_min(1e-12), angle

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat(student, teacher, "RKD")
        d_s, a_s = self._relations(s)
        d_t, a_t = self._relations(t)
        loss = self.distance_weight * F.smooth_l1_loss(d_s, d_t) + self.angle_weight * F.smooth_l1_loss(a_s, a_t)
        return as_scalar(loss)


@register_loss("PKT")
class PKT(Loss):
    """Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV).

    The cosine-similarity kernel ``K(a, b) = ½(aᵀb / (‖a‖‖b‖) + 1)`` turns each batch into
    conditional probabilities ``p_{j|i} = K(x_i, x_j) / Σ_{k≠i} K(x_i, x_k)`` (j ≠ i), and::

        PKT = (1/b) Σ_i Σ_{j≠i} p^t_{j|i} · log((p^t_{j|i} + ε) / (p^s_{j|i} + ε)),   ε = 1e-7

    the paper's KL divergence, averaged over the batch (the authors' code also counts j = i and
    averages over all b² entries instead). A batch of one has no pairs and gives 0.
    """

    def __init__(self, eps: float = 1e-7) -> None:
        super().__init__()
        self.eps = float(eps)

    def _conditional(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1)
        kernel = (x @ x.t() + 1) / 2
        kernel = kernel * (1 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))
        return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(self.eps)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat(student, teacher, "PKT")
        p_s, p_t = self._conditional(s), self._conditional(t)
        kl = p_t * torch.log((p_t + self.eps) / (p_s + self.eps))  # zero on the diagonal, where p_t = 0
        return as_scalar(kl.sum() / s.shape[0])


@register_loss("CC")
class CC(Loss):
    """Peng, Jin, Liu, Zhou, Wu, Liu, Li & Zhang 2019, "Correlation Congruence for Knowledge Distillation" (ICCV).

    The correlation between samples is the Gaussian RBF kernel ``exp(−γ‖x_i − x_j‖²)`` on
    L2-normalised features, approximated by its order-P Taylor expansion
    ``k(x_i, x_j) ≈ Σ_{p=0}^{P} exp(−2γ) (2γ)^p / p! · (x_iᵀx_j)^p``, and::

        CC = (1/b²) ‖k(F_s) − k(F_t)‖_F²

    Defaults γ = 0.4, P = 2 (the paper).
    """

    def __init__(self, gamma: float = 0.4, order: int = 2) -> None:
        super().__init__()
        if order < 0:
            raise ValueError(f"order must be ≥ 0, got {order}")
        self.gamma = float(gamma)
        self.order = int(order)

    def correlation(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1)
        sim = x @ x.t()
        coef = [math.exp(-2 * self.gamma) * (2 * self.gamma) ** p / math.factorial(p) for p in range(self.order + 1)]
        out = torch.full_like(sim, coef[0])
        power = torch.ones_like(sim)
        for p in range(1, self.order + 1):
            power = power * sim
            out = out + coef[p] * power
        return out

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat(student, teacher, "CC")
        return as_scalar(F.mse_loss(self.correlation(s), self.correlation(t)))
