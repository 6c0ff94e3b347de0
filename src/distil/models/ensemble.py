"""An ensemble of models as one model: the members' outputs combined (Hinton, Vinyals & Dean 2015, §3).

The soft targets of an ensemble are the weighted arithmetic mean of its members' tempered distributions,

    p̄_T = Σ_i w_i · softmax(z_i / T),   Σ_i w_i = 1,

and :func:`ensemble_logits` returns ``T · log p̄_T``: since ``softmax(T · log p̄_T / T) = p̄_T`` exactly,
the ordinary ``KD(T)`` term reading these logits minimises ``T² · KL(p̄_T ‖ softmax(s/T))`` against the
ensemble. At T = 1 they are the log of the averaged probabilities, the usual ensemble prediction (and
what an ensemble's beam search scores with, :mod:`distil.models.seq2seq_ensemble`). ``combine: logits``
averages logits instead (a geometric mean of the distributions, renormalised).

This is the one place of that maths: :class:`Ensemble` (classifiers: ``members(x)`` → ``(B, C)``) and
:class:`distil.models.seq2seq_ensemble.Seq2SeqEnsemble` (translation: ``(B, T, V)`` per target position)
both call :func:`ensemble_logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

COMBINES = ("probs", "logits")


def ensemble_logits(z: torch.Tensor, weights: torch.Tensor, combine: str = "probs", T: float = 1.0) -> torch.Tensor:
    """The members' logits ``z`` ``(members, ..., classes)`` combined with ``weights`` ``(members,)`` (sum 1):
    ``T · log Σ_i w_i softmax(z_i / T)`` (``probs``) or ``Σ_i w_i z_i`` (``logits``)."""
    w = weights.to(z.device, z.dtype).view(-1, *([1] * (z.dim() - 1)))
    if combine == "logits":
        return (w * z).sum(0)
    p = (w * F.softmax(z / T, dim=-1)).sum(0)
    return T * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


class Ensemble(nn.Module):
    """Members whose outputs are combined: ``T · log Σ_i w_i softmax(z_i / T)`` (or ``Σ_i w_i z_i``)."""

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | None = None, combine: str = "probs", T: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        w = torch.tensor(list(weights) if weights is not None else [1.0] * len(members), dtype=torch.float32)
        if w.shape != (len(members),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"ensemble weights must be {len(members)} non-negative numbers with a positive sum, got {weights}")
        self.register_buffer("member_weights", w / w.sum())
        if combine not in COMBINES:
            raise ValueError(f"combine must be 'probs' or 'logits', got {combine!r}")
        self.combine = combine
        self.T = float(T)

    def at_temperature(self, T: float) -> Self:
        """The same members and weights, combined at temperature ``T`` (shares the members)."""
        return type(self)(list(self.members), self.member_weights.tolist(), self.combine, T).to(self.member_weights.device)

    def combined(self, z: torch.Tensor) -> torch.Tensor:
        """The members' stacked logits ``(members, ..., classes)`` combined (:func:`ensemble_logits`)."""
        return ensemble_logits(z, self.member_weights, self.combine, self.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combined(torch.stack([m(x) for m in self.members]))  # (members, batch, classes)
