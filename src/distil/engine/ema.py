"""A model's exponential moving average: the teacher of self-distillation without a teacher.

BYOL (Grill et al. 2020), DINO (Caron et al. 2021) and Mean Teacher (Tarvainen & Valpola 2017) take as
teacher the exponential moving average of the student's weights,

    θ_t ← m · θ_t + (1 − m) · θ_s          (buffers — BatchNorm statistics — copied as they are),

updated once per training step. :class:`EmaModel` holds that copy (frozen, in eval mode) and
:meth:`EmaModel.update` applies the rule; ``momentum = 0`` makes it a copy of the student's current
weights (FixMatch's "the model labels its own weak views").
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EmaModel(nn.Module):
    """A frozen exponential-moving-average copy of ``model`` (made when this is built)."""

    def __init__(self, model: nn.Module, momentum: float) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.average = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.average(x)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``average ← m · average + (1 − m) · model`` for parameters; buffers are copied."""
        own = dict(self.average.named_parameters())
        for name, p in model.named_parameters():
            own[name].lerp_(p.detach().to(own[name].dtype), 1.0 - self.momentum)
        own_buffers = dict(self.average.named_buffers())
        for name, b in model.named_buffers():
            own_buffers[name].copy_(b)
        self.updates += 1
