"""Semi-supervised losses: a pseudo-labeller's confident predictions teach the student on unlabelled data.

The "teacher" here is whatever labels the unlabelled batch (a trained teacher, or the student's own
EMA); the views (weak for the pseudo-labeller, strong for the student) are made elsewhere. Neither
loss reads the labels, and both detach the teacher side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distil.losses.base import Loss, as_scalar, check_same_batch, check_same_shape
from distil.losses.registry import register_loss


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return float(threshold)


def _check_temperature(T: float) -> float:
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    return float(T)


@register_loss("FixMatch")
class FixMatch(Loss):
    """Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence" (NeurIPS).

    By Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang & Raffel: cross-entropy to the
    confident pseudo-labels.

    The teacher's logits t are the pseudo-labeller's outputs on a weakly augmented view, the
    student's s on a strongly augmented view of the same samples. With ``p_i = softmax(t_i / T)``, the
    pseudo-label ``ŷ_i = argmax_c p_ic`` and the confidence mask ``m_i = 1[max_c p_ic ≥ τ]``::

        FixMatch = (1/B) Σ_i m_i · CE(s_i, ŷ_i)

    averaged over all B rows, as the paper's unlabelled loss (not over the kept rows only), so its
    scale grows as the pseudo-labeller grows confident. ``soft=True`` replaces the hard pseudo-label
    by the distribution itself, ``CE = −Σ_c p_ic · log softmax(s_i)_c``, on the same kept rows.

    Defaults τ = ``threshold`` = 0.95 (the paper's, which weighs the term λ_u = 1) and T = 1 (the
    plain softmax, as the paper). ``last`` holds the latest forward's ``mask_rate``, the fraction of
    rows kept, to read from Python (the run's metrics log the weighted term only).
    """

    def __init__(self, threshold: float = 0.95, T: float = 1.0, soft: bool = False) -> None:
        super().__init__()
        self.threshold = _check_threshold(threshold)
        self.T = _check_temperature(T)
        self.soft = bool(soft)
        self._last: dict[str, torch.Tensor] = {}

    @property
    def last(self) -> dict[str, float]:
        """The latest forward's ``mask_rate`` (fraction of the batch confident enough to be used), as a float."""
        return {k: float(v) for k, v in self._last.items()}

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("FixMatch", student, teacher)
        if student.dim() != 2:
            raise ValueError(f"FixMatch needs logits of shape (batch, classes), got {tuple(student.shape)}")
        p = F.softmax(teacher.detach() / self.T, dim=1)
        confidence, pseudo = p.max(dim=1)
        mask = (confidence >= self.threshold).to(student.dtype)
        if self.soft:
            per_row = -(p * F.log_softmax(student, dim=1)).sum(dim=1)
        else:
            per_row = F.cross_entropy(student, pseudo, reduction="none")
        self._last = {"mask_rate": mask.detach().mean()}
        return as_scalar((mask * per_row).mean())


@register_loss("CoMatchGraph")
class CoMatchGraph(Loss):
    """Li, Xiong & Hoi 2021, "CoMatch: Semi-supervised Learning with Contrastive Graph Regularization" (ICCV).

    Its graph-contrastive term: the student's embedding graph matches the pseudo-labels' graph.

    Reads the student's embedding s (B, s_dim) and the pseudo-labeller's logits t (B, C). A projector
    ``Linear(s_dim, hidden) → ReLU → Linear(hidden, proj_dim)`` gives ``z_i = g(s_i) / ‖g(s_i)‖₂``.

    * Embedding graph: ``Q_ij = exp(z_i·z_j / T) / Σ_{k≠i} exp(z_i·z_k / T)`` for j ≠ i.
    * Pseudo-label graph: with ``p_i = softmax(t_i)``, ``W_ij = p_i·p_j`` for j ≠ i, set to 0 where
      ``W_ij < τ``, each row then normalised to sum 1. A row with no edge left (sum 0) is skipped.

    ::

        CoMatchGraph = mean over kept rows i of −Σ_{j≠i} W_ij · log Q_ij

    so samples the pseudo-labeller puts in one class are pulled together in the student's embedding,
    and others pushed apart. With no row kept the value is 0 (still connected to the student's graph).

    CoMatch itself builds both graphs over two strong views of every sample and keeps the self-loop
    (W_ii = 1: each view's positive is the other view of itself). Here the graphs are over the other
    samples of the batch (one student view, no diagonal): the part that propagates the pseudo-labels'
    structure between samples. Needs B ≥ 2.

    Trainable: the projector (``projector``). Defaults hidden = s_dim (the authors' projector keeps the
    embedding's width; their CIFAR code activates it with LeakyReLU(0.1) where this one uses ReLU),
    proj_dim = 64, T = 0.2, τ = ``threshold`` = 0.8, the authors' CIFAR settings (their code weighs
    the term λ_c = 1 by default). ``s_dim`` is filled in by the engine.
    """

    def __init__(self, s_dim: int, hidden: int | None = None, proj_dim: int = 64, T: float = 0.2, threshold: float = 0.8) -> None:
        super().__init__()
        if s_dim < 1:
            raise ValueError(f"s_dim must be ≥ 1, got {s_dim}")
        hidden = s_dim if hidden is None else hidden
        if hidden < 1:
            raise ValueError(f"hidden must be ≥ 1, got {hidden}")
        if proj_dim < 1:
            raise ValueError(f"proj_dim must be ≥ 1, got {proj_dim}")
        self.s_dim, self.hidden, self.proj_dim = int(s_dim), int(hidden), int(proj_dim)
        self.T = _check_temperature(T)
        self.threshold = _check_threshold(threshold)
        self.projector = nn.Sequential(nn.Linear(self.s_dim, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.proj_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_batch("CoMatchGraph", student, teacher)
        b = student.shape[0]
        if b < 2:
            raise ValueError(f"CoMatchGraph needs a batch of at least 2 samples (it relates samples to each other), got {b}")
        s = student.reshape(b, -1)
        if s.shape[1] != self.s_dim:
            raise ValueError(f"CoMatchGraph was built for embeddings of {self.s_dim} values (s_dim), got {s.shape[1]}")
        if teacher.dim() != 2:
            raise ValueError(f"CoMatchGraph reads the teacher's logits, of shape (batch, classes), got {tuple(teacher.shape)}")
        z = F.normalize(self.projector(s), dim=1)
        eye = torch.eye(b, dtype=torch.bool, device=z.device)
        log_q = F.log_softmax((z @ z.t() / self.T).masked_fill(eye, float("-inf")), dim=1).masked_fill(eye, 0.0)
        p = F.softmax(teacher.detach().to(z.dtype), dim=1)
        w = (p @ p.t()).masked_fill(eye, 0.0)
        w = torch.where(w >= self.threshold, w, torch.zeros_like(w))
        rows = w.sum(dim=1)
        kept = rows > 0
        if not kept.any():
            return as_scalar(log_q.sum() * 0.0)
        w = w[kept] / rows[kept].unsqueeze(1)
        return as_scalar(-(w * log_q[kept]).sum(dim=1).mean())
