"""Self-supervised losses as distillation: the student's embedding of one view must match the teacher's.

The teacher is either a frozen network (of any width: t_dim may differ from s_dim), the student
seeing another augmented view of the same images than the teacher, or an exponential moving average
of the student itself (self-distillation, s_dim = t_dim). The losses see only the two batches of
features ``(B, ...)``, flattened to ``(B, D)``; views and the EMA teacher are made elsewhere
(``distil.engine.ema``, ``distil.engine.view_teacher``). Sample i of the student batch and sample i
of the teacher batch are the two views of one image: the positive pair.

Heads (projectors, predictors) are trainable sub-modules of the loss: they train with the student
and are saved with the run's objective, never exported with the student. Their state that is not
trained (SEED's queue, DINO's centre and teacher head) changes under ``torch.no_grad()`` after the
loss is computed, in training mode only, so evaluation-mode forwards change nothing. Every loss
detaches the teacher side.
"""

from __future__ import annotations

import copy
import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import nn

from distil.losses.base import Loss, as_scalar, check_same_batch, check_same_shape
from distil.losses.contrastive import _random_unit_rows
from distil.losses.registry import register_loss

# --- argument checks: each names the argument and the value ----------------------------------


def _dim(name: str, value: object, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        allowed = "an integer ≥ 1" + (" or None" if optional else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _momentum(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
    return float(value)


# --- shared pieces ----------------------------------------------------------------------------


def _mlp(in_dim: int, hidden: int | None, out_dim: int, *, batch_norm: bool, activation: type[nn.Module] = nn.ReLU) -> nn.Module:
    """``Linear`` when ``hidden`` is None, else ``Linear → [BatchNorm1d →] activation → Linear``."""
    if hidden is None:
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [activation(), nn.Linear(hidden, out_dim)]
    return nn.Sequential(*layers)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _flat(loss: str, student: torch.Tensor, teacher: torch.Tensor, s_dim: int, t_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides as ``(B, D)``, the teacher detached; a width other than the one built for is a ValueError."""
    check_same_batch(loss, student, teacher)
    s, t = student.flatten(1), teacher.detach().flatten(1)
    if s.shape[1] != s_dim or t.shape[1] != t_dim:
        raise ValueError(
            f"{loss} was built for s_dim={s_dim}, t_dim={t_dim} (features flattened per sample), "
            f"got student {tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )
    return s, t


def _check_batch_for_batch_norm(loss: str, module: nn.Module, batch: int, training: bool) -> None:
    if training and batch < 2 and _has_batch_norm(module):
        raise ValueError(f"{loss}'s head has BatchNorm, which needs training batches of ≥ 2 samples, got {batch} (or use hidden=None)")


# --- the losses -------------------------------------------------------------------------------


@register_loss("InfoNCE")
class InfoNCE(Loss):
    """van den Oord, Li & Vinyals 2018, "Representation Learning with Contrastive Predictive Coding" (arXiv
    1807.03748); Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning
    of Visual Representations" (SimCLR, ICML).

    A projector g (``proj``: ``Linear(s_dim, hidden) → ReLU → Linear(hidden, t_dim)``, or one
    ``Linear(s_dim, t_dim)`` with ``hidden=None``) maps the student into the teacher's space; both
    sides are L2-normalised, ``z_s = g(s)/‖g(s)‖``, ``z_t = t/‖t‖``, and with the (B × B) logits
    ``ℓ = z_s z_tᵀ / T`` the positive of row i is column i, every other sample of the batch a negative::

        InfoNCE = ½ [ −mean_i log softmax_j(ℓ_ij)|_{j=i}  −  mean_j log softmax_i(ℓ_ij)|_{i=j} ]

    i.e. the symmetric cross-entropy ``½ (CE(ℓ, arange B) + CE(ℓᵀ, arange B))``: ≥ 0, log B when
    the logits tell the samples apart no better than chance (a batch of one gives 0: no negatives).
    Trainable: ``proj``. Defaults hidden = 256, T = 0.1.
    """

    def __init__(self, s_dim: int, t_dim: int, hidden: int | None = 256, T: float = 0.1) -> None:
        super().__init__()
        self.s_dim, self.t_dim = _dim("s_dim", s_dim), _dim("t_dim", t_dim)
        self.hidden = _dim("hidden", hidden, optional=True)
        self.T = _positive("temperature T", T)
        self.proj = _mlp(self.s_dim, self.hidden, self.t_dim, batch_norm=False)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat("InfoNCE", student, teacher, self.s_dim, self.t_dim)
        z_s = F.normalize(self.proj(s), dim=1)
        z_t = F.normalize(t, dim=1)
        logits = z_s @ z_t.t() / self.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        return as_scalar(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)))


@register_loss("BYOL")
class BYOL(Loss):
    """Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning" (NeurIPS).

    A predictor q (``predictor``: ``Linear(s_dim, hidden) → BatchNorm1d → ReLU → Linear(hidden, t_dim)``,
    BYOL's predictor; one ``Linear`` with ``hidden=None``) regresses the teacher's embedding::

        BYOL = mean_i ‖q(s_i)/‖q(s_i)‖ − t_i/‖t_i‖‖² = mean_i (2 − 2·cos(q(s_i), t_i))

    with stop-gradient on t. It lies in [0, 4]; 0 when each prediction is a positive multiple of its target.

    No projector on the teacher side: the target is the teacher's embedding itself. A frozen
    teacher needs none (its embedding is already the representation to match, and a head on it
    would be trained by nothing), and with an EMA teacher the target network is the EMA of the
    whole student, so whatever the student computes up to this tap the teacher computes too;
    BYOL's asymmetry is the predictor, which only the student side has.

    The predictor's BatchNorm needs training batches of ≥ 2 samples (a ValueError says so).
    Trainable: ``predictor``. Default hidden = 256 (the paper's is 4096 wide on 256-d projections).
    """

    def __init__(self, s_dim: int, t_dim: int, hidden: int | None = 256) -> None:
        super().__init__()
        self.s_dim, self.t_dim = _dim("s_dim", s_dim), _dim("t_dim", t_dim)
        self.hidden = _dim("hidden", hidden, optional=True)
        self.predictor = _mlp(self.s_dim, self.hidden, self.t_dim, batch_norm=True)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat("BYOL", student, teacher, self.s_dim, self.t_dim)
        _check_batch_for_batch_norm("BYOL", self.predictor, s.shape[0], self.training)
        q = F.normalize(self.predictor(s), dim=1)
        return as_scalar((2 - 2 * (q * F.normalize(t, dim=1)).sum(dim=1)).mean())


@register_loss("BarlowTwins")
class BarlowTwins(Loss):
    """Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction" (ICML).

    A projector g (``proj``: ``Linear(s_dim, hidden) → BatchNorm1d → ReLU → Linear(hidden, t_dim)``, or
    one ``Linear`` with ``hidden=None``) maps the student into the teacher's space. Each dimension of
    both sides is standardised along the batch with the biased (1/B) variance, as the paper's
    ``BatchNorm1d(affine=False)`` does in training mode, ``ẑ = (z − mean_b z) / √(var_b z + ε)``, always
    from the batch itself (no running statistics, in either mode). With the (t_dim × t_dim)
    cross-correlation ``C = ẑ_sᵀ ẑ_t / B``::

        BarlowTwins = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij²

    With the biased variance ``C_ij`` is the Pearson correlation of student dimension i with teacher
    dimension j, shrunk by ``var/(var + ε)``: |C_ij| ≤ 1. Unlike the paper, where both branches learn,
    the teacher side here is fixed (a frozen teacher or an EMA): C_ii = 1 makes student dimension i a
    copy of teacher dimension i, and then C_ij is the teacher's own correlation ρ_ij, so the loss has a
    floor near λ Σ_{i≠j} ρ_ij² that the student cannot remove, and the best student trades alignment
    against the teacher's redundancy; 0 is reached only if the teacher's dimensions are uncorrelated. As in the paper the
    sums are not normalised: the value grows with t_dim (t_dim at C = 0), so scale the term's weight
    rather than λ when the teacher is wide. Needs B ≥ 2. Trainable: ``proj``.
    Defaults hidden = 256, lambd = 5e-3 (the paper), eps = 1e-5.
    """

    def __init__(self, s_dim: int, t_dim: int, hidden: int | None = 256, lambd: float = 5e-3, eps: float = 1e-5) -> None:
        super().__init__()
        self.s_dim, self.t_dim = _dim("s_dim", s_dim), _dim("t_dim", t_dim)
        self.hidden = _dim("hidden", hidden, optional=True)
        self.lambd = _non_negative("lambd", lambd)
        self.eps = _positive("eps", eps)
        self.proj = _mlp(self.s_dim, self.hidden, self.t_dim, batch_norm=True)

    def _standardise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + self.eps)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat("BarlowTwins", student, teacher, self.s_dim, self.t_dim)
        b = s.shape[0]
        if b < 2:
            raise ValueError(f"BarlowTwins standardises along the batch and needs batches of ≥ 2 samples, got {b}")
        c = self._standardise(self.proj(s)).t() @ self._standardise(t) / b
        diagonal = torch.diagonal(c)
        on = (1 - diagonal).pow(2).sum()
        off = c.pow(2).sum() - diagonal.pow(2).sum()
        return as_scalar(on + self.lambd * off)


@register_loss("SEED")
class SEED(Loss):
    """Fang, Wang, Wang, Zhang, Yang & Liu 2021, "SEED: Self-supervised Distillation for Visual
    Representation" (ICLR).

    A projector g (``proj``: ``Linear(s_dim, hidden) → ReLU → Linear(hidden, t_dim)``, MoCo v2's head,
    or one ``Linear`` with ``hidden=None``) maps the student into the teacher's space; both sides are
    L2-normalised, ``z_i = g(s_i)/‖g(s_i)‖``, ``t_i ← t_i/‖t_i‖``. A FIFO queue Q of the K =
    ``queue_size`` most recent normalised teacher embeddings gives every sample the anchors
    ``[t_i ; Q]``, the positive first, and two distributions over them::

        p_t_i = softmax([t_i·t_i, t_i·Q₁, …, t_i·Q_K] / T_t)
        p_s_i = softmax([z_i·t_i, z_i·Q₁, …, z_i·Q_K] / T_s)
        SEED  = mean_i −Σ_j p_t_ij log p_s_ij

    a cross-entropy, so it includes the entropy H(p_t) that no student can remove: with z = t and
    T_s = T_t it equals H(p_t), its minimum over the student. After the loss, in training mode, the
    batch's normalised teacher embeddings are enqueued in place of the oldest (a batch larger than
    the queue keeps its last K). The queue starts as random unit rows.

    Trainable: ``proj``. Not trained: ``queue`` (K, t_dim) and ``queue_ptr`` (buffers).
    Defaults hidden = 256, queue_size = 4096, T_s = 0.2, T_t = 0.01 (the paper's student and teacher
    temperatures; its queue holds 65536).
    """

    def __init__(
        self, s_dim: int, t_dim: int, hidden: int | None = 256, queue_size: int = 4096, T_s: float = 0.2, T_t: float = 0.01
    ) -> None:
        super().__init__()
        self.s_dim, self.t_dim = _dim("s_dim", s_dim), _dim("t_dim", t_dim)
        self.hidden = _dim("hidden", hidden, optional=True)
        self.queue_size = _dim("queue_size", queue_size)
        self.T_s = _positive("student temperature T_s", T_s)
        self.T_t = _positive("teacher temperature T_t", T_t)
        self.proj = _mlp(self.s_dim, self.hidden, self.t_dim, batch_norm=False)
        self.register_buffer("queue", _random_unit_rows(self.queue_size, self.t_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        s, t = _flat("SEED", student, teacher, self.s_dim, self.t_dim)
        z = F.normalize(self.proj(s), dim=1)
        t = F.normalize(t, dim=1)
        queue = self.queue.clone()  # backward needs the queue as it was; _enqueue overwrites it in place
        teacher_logits = torch.cat([(t * t).sum(dim=1, keepdim=True), t @ queue.t()], dim=1) / self.T_t
        student_logits = torch.cat([(z * t).sum(dim=1, keepdim=True), z @ queue.t()], dim=1) / self.T_s
        p_t = F.softmax(teacher_logits, dim=1)
        loss = -(p_t * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()
        if self.training:
            self._enqueue(t)
        return as_scalar(loss)

    @torch.no_grad()
    def _enqueue(self, t: torch.Tensor) -> None:
        size, b = self.queue.shape[0], t.shape[0]
        keep = min(b, size)
        slots = (self.queue_ptr + torch.arange(b - keep, b, device=self.queue.device)) % size
        self.queue[slots] = t[-keep:].to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + b) % size)


class _CosinePrototypes(nn.Module):
    """DINO's last layer: ``weight`` V (``out_features × in_features``, no bias) of prototypes; the
    input and every row of V are L2-normalised, ``h(z) = V̂ ẑ``, so every score is a cosine in [−1, 1]
    (the paper's L2-normalised bottleneck and weight-normalised last layer with the norm g fixed to 1)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(_random_unit_rows(out_features, in_features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) @ F.normalize(self.weight, dim=1).t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@register_loss("DINO")
class DINO(Loss):
    """Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin 2021, "Emerging Properties in
    Self-Supervised Vision Transformers" (DINO, ICCV), as distillation.

    Student and teacher features must have one shape (``needs_same_shape``: the engine puts a
    connector on the student side, so the loss is built for the teacher's width ``t_dim`` only). A
    head h (``head``: ``Linear(t_dim, hidden) → GELU → Linear(hidden, bottleneck)`` giving z, then
    prototypes V, an ``out_dim × bottleneck`` matrix without bias) maps a feature to ``out_dim``
    prototype scores, cosines in [−1, 1]::

        h(x) = V̂ ẑ,   ẑ = z/‖z‖,   V̂ = V with every row divided by its norm

    the paper's L2-normalised bottleneck and weight-normalised last layer with its norm g fixed to 1,
    reduced from three layers to two and from 65,536 prototypes to ``out_dim``. The scores being
    bounded, so are the logits: |h/T| ≤ 1/T whatever the features' magnitude. The student uses
    h_s = ``head`` (trained); the teacher uses h_t = ``teacher_head``, an exponential moving average
    of the whole student head, MLP and prototypes (frozen parameters, which start as a copy of it).
    With the centre c (``center``, zeros at first)::

        p_t_i = softmax((h_t(t_i) − c) / T_t)
        DINO  = mean_i −Σ_k p_t_ik log softmax(h_s(s_i) / T_s)_k

    After the loss, in training mode only, under no gradient:
    ``c ← m_c·c + (1 − m_c)·mean_i h_t(t_i)`` (m_c = ``center_momentum``) and
    ``θ(h_t) ← m_h·θ(h_t) + (1 − m_h)·θ(h_s)`` (m_h = ``head_momentum``). The EMA head update thus
    happens inside the loss's forward, once per training step (with the student head as it is before
    that step's optimizer update), and evaluation-mode forwards change nothing.
    With ``strategy self_supervised, teacher: ema`` the backbone's EMA uses the strategy's ``momentum``
    and this head its own ``head_momentum``; the paper moves the whole teacher with one schedule, so
    set the two alike when it matters.

    Centring and the sharper teacher temperature are DINO's guard against collapse. Trainable:
    ``head`` (``head.3.weight`` is V, random unit rows at first). Not trained: ``teacher_head`` (parameters with
    ``requires_grad=False``, saved with the run) and ``center`` (a buffer). Defaults hidden = 256,
    bottleneck = 64, out_dim = 256 (the paper's: 2048, 256, 65536), T_s = 0.1, T_t = 0.04,
    center_momentum = 0.9, head_momentum = 0.996.
    """

    needs_same_shape = True

    def __init__(
        self,
        t_dim: int,
        hidden: int = 256,
        out_dim: int = 256,
        T_s: float = 0.1,
        T_t: float = 0.04,
        center_momentum: float = 0.9,
        head_momentum: float = 0.996,
        bottleneck: int = 64,
    ) -> None:
        super().__init__()
        self.t_dim = _dim("t_dim", t_dim)
        self.hidden = _dim("hidden", hidden)
        self.out_dim = _dim("out_dim", out_dim)
        self.T_s = _positive("student temperature T_s", T_s)
        self.T_t = _positive("teacher temperature T_t", T_t)
        self.center_momentum = _momentum("center_momentum", center_momentum)
        self.head_momentum = _momentum("head_momentum", head_momentum)
        self.bottleneck = _dim("bottleneck", bottleneck)
        mlp = _mlp(self.t_dim, self.hidden, self.bottleneck, batch_norm=False, activation=nn.GELU)
        self.head = nn.Sequential(*mlp, _CosinePrototypes(self.bottleneck, self.out_dim))
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(self.out_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_batch("DINO", student, teacher)
        check_same_shape("DINO", student, teacher)
        s, t = student.flatten(1), teacher.detach().flatten(1)
        if t.shape[1] != self.t_dim:
            raise ValueError(
                f"DINO was built for t_dim={self.t_dim} (features flattened per sample), got features of shape {tuple(teacher.shape)}"
            )
        with torch.no_grad():
            teacher_scores = self.teacher_head(t)
            p_t = F.softmax((teacher_scores - self.center) / self.T_t, dim=1)
        log_p_s = F.log_softmax(self.head(s) / self.T_s, dim=1)
        loss = -(p_t * log_p_s).sum(dim=1).mean()
        if self.training:
            self._update(teacher_scores)
        return as_scalar(loss)

    @torch.no_grad()
    def _update(self, teacher_scores: torch.Tensor) -> None:
        self.center.lerp_(teacher_scores.mean(dim=0).to(self.center.dtype), 1.0 - self.center_momentum)
        for average, current in zip(self.teacher_head.parameters(), self.head.parameters()):
            average.lerp_(current.detach().to(average.dtype), 1.0 - self.head_momentum)
