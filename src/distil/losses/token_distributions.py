"""Divergences between a student's and a teacher's next-token distributions (language-model distillation).

Inputs are logits ``(..., V)`` over one vocabulary — ``(B, L, V)`` for a batch of token blocks — and an
optional boolean ``mask`` of the leading shape (``(B, L)``): True where a position counts. Every loss
here is the mean over counted positions of a per-position divergence summed over the vocabulary, so
padding (and, in on-policy batches, the prompt) never contributes, and a batch with no counted position
gives 0 rather than 0/0. ``target`` may stand in for the mask (positions labelled ``-100`` are left out),
so the losses also read a tagger-style labelled batch. With ``p = softmax(t/T)`` the teacher's and
``q = softmax(s/T)`` the student's distribution at one position:

* ``FKL``  forward KL(p ‖ q), word-level KD (Kim & Rush 2016; Hinton et al. 2015): mode-covering;
* ``RKL``  reverse KL(q ‖ p), MiniLLM (Gu, Dong, Wei & Huang 2024): mode-seeking;
* ``GJSD`` generalised Jensen–Shannon JSD(β) with ``m = β·p + (1−β)·q`` (GKD, Agarwal et al. 2024);
* ``TVD``  total variation ½ Σ|p − q| (Wen et al. 2023, "f-Divergence Minimization for Sequence-Level KD");
* ``SKL`` / ``SRKL`` skew KL(p ‖ αp + (1−α)q) and skew reverse KL(q ‖ αq + (1−α)p) (DistiLLM, Ko et al. 2024).

All multiply by ``T²`` as :class:`~distil.losses.response.KD` does (1 at the usual ``T = 1``) and detach the teacher.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distil.losses.base import Loss, as_scalar, check_same_shape
from distil.losses.registry import register_loss

#: a position labelled -100 in ``target`` does not count (cross-entropy's ``ignore_index``)
NO_LABEL = -100


def _counted(per_position: torch.Tensor, mask: torch.Tensor | None, target: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_position`` over the positions that count (all, ``mask``, or ``target != -100``)."""
    if mask is None and target is not None:
        mask = target != NO_LABEL
    if mask is None:
        return per_position.mean() if per_position.numel() else per_position.sum()
    if mask.shape != per_position.shape:
        raise ValueError(f"the mask must have the logits' leading shape {tuple(per_position.shape)}, got {tuple(mask.shape)}")
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1)


def _log_probs(student: torch.Tensor, teacher: torch.Tensor, T: float, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_same_shape(name, student, teacher)
    return F.log_softmax(student / T, dim=-1), F.log_softmax(teacher.detach() / T, dim=-1)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a ‖ b) summed over the last axis; 0·log 0 = 0 (a probability of 0 contributes nothing)."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def _mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w·a + (1−w)·b), computed in log space."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def _temperature(T: float) -> float:
    if T <= 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    return float(T)


def _open_unit(name: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return float(value)


class TokenDivergence(Loss):
    """Base: ``T² · mean over counted positions of divergence(p, q)``; subclasses give ``divergence``."""

    def __init__(self, T: float = 1.0) -> None:
        super().__init__()
        self.T = _temperature(T)

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        log_q, log_p = _log_probs(student, teacher, self.T, type(self).__name__)
        return as_scalar(_counted(self.divergence(log_q, log_p), mask, target) * self.T**2)


@register_loss("FKL")
class FKL(TokenDivergence):
    """Forward KL per token, word-level KD (Kim & Rush 2016, "Sequence-Level Knowledge Distillation").

    ``FKL = T² · mean_positions Σ_v p_v (log p_v − log q_v)`` with ``p = softmax(t/T)`` the teacher's
    and ``q = softmax(s/T)`` the student's next-token distribution: the student must cover every token
    the teacher gives mass to (mode-covering).
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return _kl(log_p, log_q)


@register_loss("RKL")
class RKL(TokenDivergence):
    """Reverse KL per token, as MiniLLM minimises (Gu, Dong, Wei & Huang 2024, "MiniLLM: Knowledge
    Distillation of Large Language Models", ICLR).

    ``RKL = T² · mean_positions Σ_v q_v (log q_v − log p_v)``: the student is penalised for mass where
    the teacher has little, so it concentrates on the teacher's main modes (mode-seeking). MiniLLM
    optimises the sequence-level reverse KL with policy gradients; on the student's own samples
    (``on_policy`` batches) the per-token reverse KL here is that objective's single-step term.
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return _kl(log_q, log_p)


@register_loss("GJSD")
class GJSD(TokenDivergence):
    """Generalised Jensen–Shannon divergence JSD(β) (Agarwal et al. 2024, "On-Policy Distillation of
    Language Models: Learning from Self-Generated Mistakes" — GKD, ICLR).

    ``m = β·p + (1−β)·q``; ``JSD(β) = T² · mean_positions [β·KL(p ‖ m) + (1−β)·KL(q ‖ m)]``, β in (0, 1).
    Bounded by ``−β log β − (1−β) log(1−β)`` (log 2 at β = ½); as β → 0 it behaves as β·KL(p ‖ q) (forward),
    as β → 1 as (1−β)·KL(q ‖ p) (reverse), so β moves between mode-covering and mode-seeking.
    """

    def __init__(self, beta: float = 0.5, T: float = 1.0) -> None:
        super().__init__(T)
        self.beta = _open_unit("beta", beta)

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        log_m = _mixture(log_p, log_q, self.beta)
        return self.beta * _kl(log_p, log_m) + (1 - self.beta) * _kl(log_q, log_m)


@register_loss("TVD")
class TVD(TokenDivergence):
    """Total variation distance per token (Wen, Li, Du & Mou 2023, "f-Divergence Minimization for
    Sequence-Level Knowledge Distillation", ACL).

    ``TVD = T² · mean_positions ½ Σ_v |p_v − q_v|``: symmetric, bounded by 1.
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)


@register_loss("SKL")
class SKL(TokenDivergence):
    """Skew KL (Ko, Kim, Chen & Yun 2024, "DistiLLM: Towards Streamlined Distillation for Large Language
    Models", ICML).

    ``SKL(α) = T² · mean_positions KL(p ‖ α·p + (1−α)·q)``: forward KL against a mixture that keeps the
    target bounded where the student gives a token no mass (α = 0 is FKL; the paper uses α = 0.1).
    """

    def __init__(self, alpha: float = 0.1, T: float = 1.0) -> None:
        super().__init__(T)
        self.alpha = _open_unit("alpha", alpha)

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return _kl(log_p, _mixture(log_p, log_q, self.alpha))


@register_loss("SRKL")
class SRKL(SKL):
    """Skew reverse KL (Ko et al. 2024, DistiLLM).

    ``SRKL(α) = T² · mean_positions KL(q ‖ α·q + (1−α)·p)`` (α = 0 is RKL).
    """

    def divergence(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        return _kl(log_q, _mixture(log_q, log_p, self.alpha))


@register_loss("TokenCE")
class TokenCE(Loss):
    """Next-token cross-entropy (the language-modelling loss on the data): ``−mean_positions log q[y]``.

    ``target`` holds the next token of each position, ``-100`` where none counts (padding, prompts);
    a batch with none gives 0. Its exponential on held-out text is the perplexity.
    """

    uses_teacher = False
    uses_target = True
    skips_unlabeled = True

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None, *, target: torch.Tensor) -> torch.Tensor:
        total = F.cross_entropy(student.reshape(-1, student.shape[-1]), target.reshape(-1), ignore_index=NO_LABEL, reduction="sum")
        return as_scalar(total / (target != NO_LABEL).sum().clamp_min(1))
