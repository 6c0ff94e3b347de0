"""Connectors: small trainable maps that bring a student feature to the teacher feature's shape.

FitNets (Romero et al. 2015) call it the regressor. Built from the shapes one probe batch shows:
feature maps get a 1×1 convolution + BatchNorm (and pooling or interpolation when the spatial sizes
differ), vectors a linear layer. Connectors train with the student and are saved with the run, but
are not part of the student that is exported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Resize(nn.Module):
    """Average-pool down or bilinear-interpolate up to a fixed spatial size."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) == self.size:
            return x
        if all(s >= t for s, t in zip(x.shape[2:], self.size)):
            pool = F.adaptive_avg_pool2d if x.dim() == 4 else F.adaptive_avg_pool1d
            return pool(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear" if x.dim() == 4 else "linear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


CONVS = {3: (nn.Conv1d, nn.BatchNorm1d), 4: (nn.Conv2d, nn.BatchNorm2d)}


def build_connector(student: torch.Size | tuple[int, ...], teacher: torch.Size | tuple[int, ...]) -> nn.Module:
    """A module mapping a batch of shape ``student`` to ``teacher``'s shape (batch dimension ignored).

    Raises ``ValueError`` saying why when no connector can bridge the two (different ranks).
    """
    s, t = tuple(student), tuple(teacher)
    if s[1:] == t[1:]:
        return nn.Identity()
    if len(s) != len(t):
        raise ValueError(f"student feature {s[1:]} and teacher feature {t[1:]} have different ranks; tap layers of the same kind (both feature maps or both vectors)")
    if len(s) == 2:
        return nn.Linear(s[1], t[1])
    if len(s) not in CONVS:
        raise ValueError(f"no connector for {len(s) - 1}-d features {s[1:]} → {t[1:]}; supported: vectors, (C, L) and (C, H, W)")
    conv, norm = CONVS[len(s)]
    layers: list[nn.Module] = [conv(s[1], t[1], kernel_size=1, bias=False), norm(t[1])]
    if s[2:] != t[2:]:
        layers.insert(0, Resize(t[2:]))
    return nn.Sequential(*layers)
