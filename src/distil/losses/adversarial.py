"""Adversarial distillation: a discriminator tells the teacher's outputs from the student's, the student learns to fool it.

The teacher side is detached: it is a fixed target, never trained through the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from distil.losses.base import Loss, as_scalar, check_same_shape
from distil.losses.registry import register_loss


@register_loss("Adversarial")
class Adversarial(Loss):
    """Xu, Hsu & Huang 2017 and Shen, He & Xue 2019 (MEAL): a discriminator the student learns to fool.

    Xu, Hsu & Huang 2017, "Training Shallow and Thin Networks for Acceleration via Knowledge
    Distillation with Conditional Adversarial Networks" (arXiv 1709.00513; ICLR Workshop 2018), and
    Shen, He & Xue 2019, "MEAL: Multi-Model Ensemble via Adversarial Learning" (AAAI).

    A discriminator D — an MLP ``Linear(t_dim, hidden) → LeakyReLU(0.2) → Linear(hidden, 1)`` giving a
    logit — reads one sample's output, flattened: the logits (by default) or an embedding, raw
    (``T=None``) or as ``softmax(x/T)``. With σ the logistic function and ``BCE(d, y) = −y·log σ(d) −
    (1−y)·log(1 − σ(d))``, averaged over the batch::

        L_D = BCE(D(t), 1) + BCE(D(s), 0)      D learns to tell teacher (1) from student (0)
        L_G = BCE(D(s), 1)                     the student learns to pass for the teacher

    and one forward returns ``L_G + L_D``. The gradients are routed so that one backward and one
    optimiser step update both players at once: L_D reads ``s.detach()`` (and the detached teacher),
    so its gradient reaches only D; L_G is computed with D's parameters detached
    (``torch.func.functional_call``), so its gradient reaches only the student. The papers alternate a
    D step and a student step; here both happen in the one training loop, simultaneously, from the
    same batch. The term's weight multiplies both parts: the student's adversarial pull and D's
    learning signal (with an optimiser that normalises each parameter's gradient scale, such as Adam,
    D only hears from this term, so its steps hardly depend on the weight).

    Trainable: the discriminator (``discriminator``), a parameter of the loss: trained by the
    student's optimiser, saved with the run's objective, not part of the exported student. Defaults
    hidden = 64, T = None. ``last`` holds the latest forward's ``generator`` (L_G), ``discriminator``
    (L_D) and ``d_accuracy`` (the fraction of the 2B inputs D classifies right, teacher when its
    logit is > 0), to read from Python (the run's metrics log the weighted term only). The student must have the teacher's shape (``t_dim`` = the flattened
    size of one sample's output, filled in by the engine).
    """

    needs_same_shape = True
    needs_exact_logits = True  # D would tell the view cache's flat tail of logits from the student's

    def __init__(self, t_dim: int, hidden: int = 64, T: float | None = None) -> None:
        super().__init__()
        if t_dim < 1:
            raise ValueError(f"t_dim must be ≥ 1, got {t_dim}")
        if hidden < 1:
            raise ValueError(f"hidden must be ≥ 1, got {hidden}")
        if T is not None and T <= 0:
            raise ValueError(f"temperature T must be > 0 or None, got {T}")
        self.t_dim = int(t_dim)
        self.hidden = int(hidden)
        self.T = None if T is None else float(T)
        self.discriminator = nn.Sequential(nn.Linear(self.t_dim, self.hidden), nn.LeakyReLU(0.2), nn.Linear(self.hidden, 1))
        self._last: dict[str, torch.Tensor] = {}

    @property
    def last(self) -> dict[str, float]:
        """The latest forward's ``generator`` (L_G), ``discriminator`` (L_D) and ``d_accuracy``, as floats."""
        return {k: float(v) for k, v in self._last.items()}

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.t_dim:
            raise ValueError(f"Adversarial was built for inputs of {self.t_dim} values per sample (t_dim), got {x.shape[1]}")
        return x if self.T is None else F.softmax(x / self.T, dim=1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, *, target: torch.Tensor | None = None) -> torch.Tensor:
        check_same_shape("Adversarial", student, teacher)
        if student.dim() == 0:
            raise ValueError("Adversarial needs outputs with a batch dimension, got a scalar")
        s, t = self._inputs(student), self._inputs(teacher.detach())
        b = s.shape[0]
        d = self.discriminator(torch.cat([t, s.detach()])).squeeze(1)  # teacher rows first: gradient to D only
        d_t, d_s = d[:b], d[b:]
        real = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t))
        loss_d = real + F.binary_cross_entropy_with_logits(d_s, torch.zeros_like(d_s))
        frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        d_g = functional_call(self.discriminator, frozen, (s,)).squeeze(1)  # gradient to the student only
        loss_g = F.binary_cross_entropy_with_logits(d_g, torch.ones_like(d_g))
        with torch.no_grad():
            accuracy = ((d_t > 0).sum() + (d_s <= 0).sum()).float() / (2 * b)
            self._last = {"generator": loss_g.detach(), "discriminator": loss_d.detach(), "d_accuracy": accuracy}
        return as_scalar(loss_g + loss_d)
