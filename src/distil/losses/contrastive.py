"""Contrastive representation distillation: the student's embedding must pick out the teacher's among negatives."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from distil.losses.base import Loss, as_scalar, check_same_batch
from distil.losses.registry import register_loss


def _random_unit_rows(n: int, d: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d), dim=1)


@register_loss("CRD")
class CRD(Loss):
    """Tian, Krishnan & Isola 2020, "Contrastive Representation Distillation" (ICLR).

    Linear heads embed the student and teacher features (flattened) into ``feat_dim`` dimensions and
    L2-normalise them: ``v_s = g_s(s)``, ``v_t = g_t(t)``. A critic scores a pair by
    ``h(v, w) = exp(⟨v, w⟩/T) / Z``, Z being ``N ×`` the mean of ``exp(⟨v, w⟩/T)`` over the first
    training batch, then fixed (N the memory's size). With K negatives per sample and the noise
    constant ``c = K/N``, each direction is the NCE loss of the paper::

        L(v) = −mean_i [ log h(v_i, w_i⁺) / (h(v_i, w_i⁺) + c) + Σ_{k=1}^{K} log c / (h(v_i, w_ik⁻) + c) ]

    and CRD = L(student anchored on teacher memory) + L(teacher anchored on student memory). N
    cancels out of ``h/c``, so the loss is computed in log space as ``log σ(⟨v,w⟩/T − log mean₀ − log K)``.

    Two memories of past embeddings supply the contrasted vectors (buffers, updated without gradient
    after each forward in training mode only):

    * ``memory="bank"`` (the paper): one row per training sample, ``(n_data, feat_dim)`` for each
      side, read and written at the sample indices (so the loss needs ``index=``). The positive is
      the other side's row for the same sample, the K = ``nce_k`` negatives are rows of other samples
      drawn uniformly. After the step a row becomes ``normalise(m·row + (1 − m)·v)``, m = ``momentum``.
    * ``memory="queue"``: a FIFO of the ``queue_size`` (default ``nce_k``) most recent embeddings of
      each side, independent of the dataset's size. The positive is the other side's current
      embedding (detached, as a memory row would be), the negatives are the whole queue (K =
      ``queue_size``); ``index`` is not needed and ``momentum`` is unused.

    Trainable: the two heads ``embed_s`` and ``embed_t`` (weights and biases). Not trained: the
    memories and the normalisation constants ``log_z``. Defaults feat_dim = 128, T = 0.07,
    momentum = 0.5 (the paper), nce_k = 4096 (the paper's best uses 16384); RepDistiller weighs the term 0.8.
    """

    uses_index = True

    def __init__(
        self,
        s_dim: int,
        t_dim: int,
        feat_dim: int = 128,
        n_data: int | None = None,
        nce_k: int = 4096,
        T: float = 0.07,
        momentum: float = 0.5,
        memory: Literal["bank", "queue"] = "bank",
        queue_size: int | None = None,
    ) -> None:
        super().__init__()
        if memory not in ("bank", "queue"):
            raise ValueError(f"memory must be 'bank' or 'queue', got {memory!r}")
        if T <= 0:
            raise ValueError(f"temperature T must be > 0, got {T}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nce_k < 1:
            raise ValueError(f"nce_k must be ≥ 1, got {nce_k}")
        if memory == "bank":
            if n_data is None or n_data < 2:
                raise ValueError(f"memory='bank' needs n_data ≥ 2 (the training set's size), got {n_data}")
            size = int(n_data)
        else:
            size = int(queue_size if queue_size is not None else nce_k)
            if size < 1:
                raise ValueError(f"queue_size must be ≥ 1, got {size}")
        self.s_dim, self.t_dim, self.feat_dim = int(s_dim), int(t_dim), int(feat_dim)
        self.n_data = None if n_data is None else int(n_data)
        self.nce_k = int(nce_k)
        self.T = float(T)
        self.momentum = float(momentum)
        self.memory = memory
        self.queue_size = size if memory == "queue" else None
        self.embed_s = nn.Linear(self.s_dim, self.feat_dim)
        self.embed_t = nn.Linear(self.t_dim, self.feat_dim)
        self.register_buffer("memory_s", _random_unit_rows(size, self.feat_dim))
        self.register_buffer("memory_t", _random_unit_rows(size, self.feat_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # log of the mean of exp(score/T) on the first training batch, per direction (NaN: not yet set)
        self.register_buffer("log_z", torch.full((2,), math.nan))

    def draw_negatives(self, index: torch.Tensor) -> torch.Tensor:
        """Bank mode: ``nce_k`` uniform sample indices per row of ``index``, never the sample itself."""
        n = self.memory_s.shape[0]
        neg = torch.randint(0, n - 1, (index.shape[0], self.nce_k), device=index.device)
        return neg + (neg >= index.unsqueeze(1)).long()

    def forward(
        self,
        student: torch.Tensor,
        teacher: torch.Tensor,
        *,
        target: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_same_batch("CRD", student, teacher)
        v_s = F.normalize(self.embed_s(student.flatten(1)), dim=1)
        v_t = F.normalize(self.embed_t(teacher.detach().flatten(1)), dim=1)
        if self.memory == "bank":
            if index is None or index.shape != (student.shape[0],):
                raise ValueError(f"CRD with memory='bank' needs index= (the batch's sample indices, shape ({student.shape[0]},))")
            index = index.to(device=self.memory_s.device, dtype=torch.long)
            rows = torch.cat([index.unsqueeze(1), self.draw_negatives(index)], dim=1)  # (B, 1 + K), positive first
            scores_s = torch.einsum("bkd,bd->bk", self.memory_t[rows], v_s)
            scores_t = torch.einsum("bkd,bd->bk", self.memory_s[rows], v_t)
        else:
            # copies: backward needs the queues as they were, and _update overwrites them in place
            queue_s, queue_t = self.memory_s.clone(), self.memory_t.clone()
            scores_s = torch.cat([(v_s * v_t.detach()).sum(dim=1, keepdim=True), v_s @ queue_t.t()], dim=1)
            scores_t = torch.cat([(v_t * v_s.detach()).sum(dim=1, keepdim=True), v_t @ queue_s.t()], dim=1)
        loss = self._nce(scores_s / self.T, 0) + self._nce(scores_t / self.T, 1)
        if self.training:
            self._update(v_s.detach(), v_t.detach(), index)
        return as_scalar(loss)

    def _nce(self, logits: torch.Tensor, direction: int) -> torch.Tensor:
        """NCE with ``h/c = exp(logit − log mean₀ − log K)``: positive in column 0, K negatives after it."""
        k = logits.shape[1] - 1
        log_mean = torch.logsumexp(logits.detach().flatten(), dim=0) - math.log(logits.numel())
        if self.training and torch.isnan(self.log_z[direction]):
            self.log_z[direction] = log_mean
        log_z = log_mean if torch.isnan(self.log_z[direction]) else self.log_z[direction]
        a = logits - log_z - math.log(k)
        return -(F.logsigmoid(a[:, 0]) + F.logsigmoid(-a[:, 1:]).sum(dim=1)).mean()

    @torch.no_grad()
    def _update(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor | None) -> None:
        if self.memory == "bank":
            for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                mixed = memory[index] * self.momentum + v.to(memory.dtype) * (1 - self.momentum)
                memory.index_copy_(0, index, F.normalize(mixed, dim=1))
            return
        size = self.memory_s.shape[0]
        keep = min(v_s.shape[0], size)
        slots = (self.queue_ptr + torch.arange(v_s.shape[0] - keep, v_s.shape[0], device=v_s.device)) % size
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            memory[slots] = v[-keep:].to(memory.dtype)
        self.queue_ptr.copy_((self.queue_ptr + v_s.shape[0]) % size)
