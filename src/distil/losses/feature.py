"""Losses between intermediate features: hints, attention maps, selectivity, variational, factors, boundaries.

The inputs are the tapped student and teacher features, the student's already brought to the
teacher's shape by a connector where the method compares values elementwise (FitNet, VID, FT, AB).
AT and NST compare per-position or per-channel *statistics*, so they accept different channel
counts and pool the larger spatial map down to the smaller one themselves. Every loss detaches the
teacher side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from distil.losses.base import Loss, as_scalar, check_same_batch, check_same_shape
from distil.losses.registry import register_loss

_POOLS = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def _pool_to_common_size(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool each (B, C, *spatial) map down to the smaller of the two sizes, dimension by dimension."""
    if student.dim() != teacher.dim() or student.dim() not in (3, 4, 5):
        raise ValueError(
            f"expected feature maps (batch, channels, *spatial) of equal rank, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    size = tuple(min(a, b) for a, b in zip(student.shape[2:], teacher.shape[2:]))
    pool = _POOLS[len(size)]
    if tuple(student.shape[2:]) != size:
        student = pool(student, size)
    if tuple(teacher.shape[2:]) != size:
        teacher = pool(teacher, size)
    return student, teacher


@register_loss("FitNet")
class FitNet(Loss):
    """Romero, Ballas, Kahou, Chassang, Gatta & Bengio 2015, "FitNets: Hints for Thin Deep Nets" (ICLR).

    The guided layer's output, mapped by the regressor r (the connector, outside this loss), regresses
    the teacher's hint layer: ``FitNet = mean over all elements of (r(v) − u)²`` — the paper's
    ``½‖u − r(v)‖²`` up to the constant ½ and the normalisation by the number of elements, so the
    weight does not depend on the layer's size.

    On Transformer hidden states ``(B, L, D)``, with the engine's linear connector W_h, it is TinyBERT's
    hidden-state loss, and on attention maps ``(B, H, L, L)`` its attention loss (Jiao et al. 2020,
    "TinyBERT", Findings of EMNLP); the mean then includes padded positions (the loss sees no mask).
    """

    needs_same_shape = True

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("FitNet", student, teacher)
        return as_scalar(F.mse_loss(student, teacher.detach()))


@register_loss("AT")
class AT(Loss):
    """Zagoruyko & Komodakis 2017, "Paying More Attention to Attention" (ICLR): attention transfer.

    A feature map A (B, C, *spatial) gives the spatial attention map ``F(A) = mean_c |A_c|^p``,
    vectorised per sample and L2-normalised, ``Q = F(A) / ‖F(A)‖₂``. The loss is

        AT = mean over samples and positions of (Q_s − Q_t)²

    which is the authors' code for the paper's ``‖Q_s − Q_t‖_p`` term (p = 2). The loss is
    unweighted: the paper weighs it β/2 per layer pair with β = 1000 (use ``AT() * 1000``, as
    RepDistiller does). Channel counts may differ; when spatial sizes differ the larger attention
    map is average-pooled to the smaller one.
    """

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"p must be > 0, got {p}")
        self.p = float(p)

    def attention(self, feature: torch.Tensor) -> torch.Tensor:
        """The (B, 1, *spatial) map ``mean_c |A_c|^p`` (not yet normalised)."""
        powered = feature.pow(2) if self.p == 2 else feature.abs().pow(self.p)
        return powered.mean(dim=1, keepdim=True)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_batch("AT", student, teacher)
        a_s, a_t = _pool_to_common_size(self.attention(student), self.attention(teacher.detach()))
        q_s = F.normalize(a_s.flatten(1), dim=1)
        q_t = F.normalize(a_t.flatten(1), dim=1)
        return as_scalar((q_s - q_t).pow(2).mean())


@register_loss("NST")
class NST(Loss):
    """Huang & Wang 2017, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer".

    Each channel's spatial response, L2-normalised, ``f^k = A_k / ‖A_k‖₂`` (a vector over positions), is
    a sample of the layer's *neuron selectivity* distribution. NST matches the two distributions by
    the squared maximum mean discrepancy with the polynomial kernel ``k(x, y) = (xᵀy + c)^d``::

        MMD² = mean_{i,i'} k(f_t^i, f_t^i') + mean_{j,j'} k(f_s^j, f_s^j') − 2·mean_{i,j} k(f_t^i, f_s^j)

    per sample, averaged over the batch. Defaults d = 2, c = 0 (the paper's polynomial kernel; the paper
    weighs the term λ/2, and RepDistiller uses weight 50). Channel counts may differ; spatial sizes are
    pooled to the smaller.
    """

    def __init__(self, degree: int = 2, c: float = 0.0) -> None:
        super().__init__()
        if degree < 1:
            raise ValueError(f"degree must be ≥ 1, got {degree}")
        self.degree = int(degree)
        self.c = float(c)

    def _kernel_mean(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (torch.bmm(x, y.transpose(1, 2)) + self.c).pow(self.degree).mean(dim=(1, 2))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_batch("NST", student, teacher)
        s, t = _pool_to_common_size(student, teacher.detach())
        s = F.normalize(s.flatten(2), dim=2)
        t = F.normalize(t.flatten(2), dim=2)
        mmd = self._kernel_mean(t, t) + self._kernel_mean(s, s) - 2 * self._kernel_mean(t, s)
        return as_scalar(mmd.mean())


@register_loss("VID")
class VID(LazyModuleMixin, Loss):
    """Ahn, Hu, Damianou, Lawrence & Dai 2019, "Variational Information Distillation for Knowledge Transfer" (CVPR).

    Maximises a variational lower bound on the mutual information between teacher and student
    features with a Gaussian ``q(t | s) = N(t; μ(s), σ²)``: μ(s) is the student feature after the
    connector (the input here), and the variance is heteroscedastic across channels and learned,
    ``σ_c² = softplus(α_c) + ε``. The loss is the negative log-likelihood, up to the constant ½·log 2π::

        VID = mean over samples, channels, positions of ½·((t − μ(s))² / σ_c² + log σ_c²)

    Trainable: ``raw_var`` (α, one per channel, dim 1 of the input), initialised so that σ² = 5
    (the authors' ``init_pred_var``); ε = 1e-5. With ``channels=None`` the parameter is created at
    the first forward (a lazy parameter: it is already the object an optimiser holds, and it is
    materialised in place). Its minimum over σ is not zero, so the loss is not zero at t = μ(s).
    """

    needs_same_shape = True

    cls_to_become = None

    def __init__(self, channels: int | None = None, init_var: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        if init_var <= eps:
            raise ValueError(f"init_var must be > eps ({eps}), got {init_var}")
        self.init_var = float(init_var)
        self.eps = float(eps)
        self.raw_var = nn.UninitializedParameter() if channels is None else nn.Parameter(torch.empty(int(channels)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            with torch.no_grad():
                # softplus⁻¹(init_var − eps), so that the variance starts at exactly init_var
                self.raw_var.fill_(math.log(math.expm1(self.init_var - self.eps)))

    def initialize_parameters(self, student: torch.Tensor, teacher: torch.Tensor, **kwargs: object) -> None:
        if self.has_uninitialized_params():
            with torch.no_grad():
                self.raw_var.materialize((teacher.shape[1],))
                self.reset_parameters()

    def variance(self) -> torch.Tensor:
        return F.softplus(self.raw_var) + self.eps

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("VID", student, teacher)
        if student.dim() < 2 or student.shape[1] != self.raw_var.shape[0]:
            raise ValueError(f"VID was built for {self.raw_var.shape[0]} channels, got features of shape {tuple(student.shape)}")
        var = self.variance().view(1, -1, *([1] * (student.dim() - 2)))
        nll = 0.5 * ((teacher.detach() - student).pow(2) / var + var.log())
        return as_scalar(nll.mean())


@register_loss("FT")
class FT(Loss):
    """Kim, Park & Kwak 2018, "Paraphrasing Complex Network: Network Compression via Factor Transfer" (NeurIPS).

    The teacher's *factor* F_T is its paraphraser's output and the student's F_S its translator's
    output (both given here as tensors of the same shape). Factors are vectorised per sample and
    L2-normalised, and compared with the paper's p = 1 norm::

        FT = mean over samples and elements of |F_S/‖F_S‖₂ − F_T/‖F_T‖₂|

    (the mean over elements, rather than the sum, follows the authors' code, ``nn.L1Loss``).
    """

    needs_same_shape = True

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("FT", student, teacher)
        f_s = F.normalize(student.flatten(1), dim=1)
        f_t = F.normalize(teacher.detach().flatten(1), dim=1)
        return as_scalar((f_s - f_t).abs().mean())


@register_loss("AB")
class AB(Loss):
    """Heo, Lee, Yun & Choi 2019, "Knowledge Transfer via Distillation of Activation Boundaries Formed by Hidden Neurons" (AAAI).

    Transfers *which side of zero* each of the teacher's pre-ReLU responses t lies on. With the
    (connector-projected) pre-ReLU student response s, margin m, and ρ(t) = 1[t > 0], the squared
    hinge of the paper::

        AB = mean over samples of Σ_neurons ρ(t)·max(0, m − s)² + (1 − ρ(t))·max(0, m + s)²

    i.e. a student neuron is pushed above +m where the teacher's fires and below −m where it does not;
    zero once every boundary agrees with margin. Default m = 1.
    """

    needs_same_shape = True

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be ≥ 0, got {margin}")
        self.margin = float(margin)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("AB", student, teacher)
        active = teacher.detach() > 0
        hinge = torch.where(active, F.relu(self.margin - student), F.relu(self.margin + student))
        return as_scalar(hinge.pow(2).flatten(1).sum(dim=1).mean())
