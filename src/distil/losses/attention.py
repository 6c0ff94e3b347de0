"""Losses between the self-attention distributions of Transformers (tapped as ``(B, H, L, L)`` probabilities)."""

from __future__ import annotations

import torch

from distil.losses.base import Loss, as_scalar, check_same_shape
from distil.losses.registry import register_loss


@register_loss("AttentionKL")
class AttentionKL(Loss):
    """Wang, Wei, Dong, Bao, Yang & Zhou 2020, "MiniLM: Deep Self-Attention Distillation for
    Task-Agnostic Compression of Pre-Trained Transformers" (NeurIPS; arXiv:2002.10957).

    Inputs: the attention probabilities of one layer l of student and teacher, ``(B, A_h, L, L)``;
    row t of head a, ``A_{l,a,t}``, is query t's distribution over the keys. The student's rows match
    the teacher's in KL divergence, per sentence x of |x| tokens::

        L_AT = 1/(A_h·|x|) · Σ_{a=1}^{A_h} Σ_{t=1}^{|x|} KL(A^T_{l,a,t} ‖ A^S_{l,a,t}),
        KL(p ‖ q) = Σ_k p_k · (log p_k − log q_k)

    averaged over the sentences of the batch. MiniLM takes the last layer of both (``layers.N.attn.probs``
    on ``text_transformer``) and adds a value-relation term, not implemented here. Both models need the
    same number of heads (MiniLM v1; the engine says so when the objective is built).

    Safe where probabilities are 0: a term with ``p_k = 0`` is 0 (padded keys, where both sides are
    0), and the student's ``q_k`` is floored at the dtype's smallest normal number, so an underflowed
    student probability gives a large finite value, never inf/NaN.

    Padding: |x| counts real tokens only. The loss sees no mask, so it reads padding off the teacher:
    a masked key gets probability exactly 0 from every query (softmax of a score at the dtype's
    minimum), so a position that no query of any head attends to is padding, and its query row is
    left out, as is any teacher row that is all zero. The value of a sentence therefore does not
    depend on how much padding its batch has. The teacher side is detached.

    TinyBERT's attention loss (Jiao et al. 2020, "TinyBERT", Findings of EMNLP: the MSE between
    attention matrices) needs no loss of its own: it is ``FitNet`` on the same taps
    (``FitNet().between("layers.1.attn.probs")``; TinyBERT compares the scores before the softmax,
    distil's taps give the probabilities), and it averages over every position, padding included.
    """

    needs_same_shape = True  # the engine checks the shapes when the objective is built (no connector maps heads)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("AttentionKL", student, teacher)
        if student.dim() != 4 or student.shape[-1] != student.shape[-2]:
            raise ValueError(f"AttentionKL expects attention probabilities (batch, heads, queries, keys) with as many queries as keys, got {tuple(student.shape)}")
        t = teacher.detach()
        s = student.clamp_min(torch.finfo(student.dtype).tiny)
        kl = (torch.xlogy(t, t) - torch.xlogy(t, s)).sum(-1)  # (B, H, L): one KL per query row; 0·log 0 = 0
        token = t.sum(dim=(1, 2)) > 0  # (B, L): positions some query attends to — the real tokens
        rows = token[:, None, :] & (t.sum(-1) > 0)  # (B, H, L): the rows that count
        per_sentence = torch.where(rows, kl, 0.0).sum((1, 2)) / rows.sum((1, 2)).clamp_min(1)
        sentences = rows.flatten(1).any(1).sum().clamp_min(1)
        return as_scalar(per_sentence.sum() / sentences)
