"""Strong batched views for the two-view methods: random resized crop, flip, jitter, erasing, noise.

Self-supervised learning (SimCLR, BYOL, DINO) and FixMatch's strong branch need views that differ
much more than a 4-pixel shift: SimCLR's ablation (Chen et al. 2020, §3) finds random resized
crops with colour distortion the essential pair. :class:`StrongViews` does, on a whole batch of
normalized ``(N, C, H, W)`` images or ``(N, C, L)`` signals, in this order:

- ``scale`` (random resized crop): a window covering a fraction ``a ~ U[scale, 1]`` of the area with
  aspect ratio ``r ~ logU[3/4, 4/3]`` (images; a segment of fraction ``a`` for signals), placed
  uniformly inside the input, resized back to the input's size (bilinear, one ``grid_sample``);
- ``hflip``: reverse the width (the time axis of signals) with probability ½;
- ``jitter`` (brightness and contrast): ``x ← a·x + b`` per sample with ``a ~ U[1 − j, 1 + j]`` and
  ``b ~ U[−j, j]``, in normalized units (the per-channel mean is 0, so ``a`` scales the contrast
  around the mean and ``b`` shifts the brightness by ``b`` standard deviations);
- ``erase`` (random erasing, Zhong et al. 2020): with probability ``erase`` a rectangle of side
  ``U[0.2, 0.5]`` of the input's set to 0 (the mean);
- ``noise``: Gaussian noise of standard deviation ``noise``.

Every draw comes from the generator passed in, on the CPU, so the same seed gives the same views on
any device. Views are drawn fresh for every batch: there is nothing to cache or replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from distil.errors import DataError


@dataclass(frozen=True)
class StrongViews:
    """A strong augmentation of a whole batch (see the module docstring); the identity when every part is off."""

    scale: float = 1.0
    hflip: bool = False
    jitter: float = 0.0
    erase: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.scale <= 1.0:
            raise DataError(f"views.scale must be in (0, 1] (the smallest crop's share of the area), got {self.scale}")
        if not 0.0 <= self.jitter < 1.0:
            raise DataError(f"views.jitter must be in [0, 1), got {self.jitter}")
        if not 0.0 <= self.erase <= 1.0:
            raise DataError(f"views.erase must be a probability in [0, 1], got {self.erase}")
        if self.noise < 0:
            raise DataError(f"views.noise must be >= 0, got {self.noise}")

    @property
    def enabled(self) -> bool:
        return self.scale < 1.0 or self.hflip or self.jitter > 0 or self.erase > 0 or self.noise > 0

    def settings(self) -> list[Any]:
        return [self.scale, self.hflip, self.jitter, self.erase, self.noise]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.enabled:
            return x
        if x.dim() not in (3, 4) or not x.is_floating_point():
            raise DataError(f"strong views need float inputs of shape (N, C, H, W) or (N, C, L), got {tuple(x.shape)} {x.dtype}")
        n = x.shape[0]

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return (low + (high - low) * torch.rand(n, *shape, generator=generator)).to(x.device)

        signal = x.dim() == 3
        if signal:
            x = x.unsqueeze(2)  # (N, C, 1, L): one code path, a crop along L only
        if self.scale < 1.0 or self.hflip:
            area = uniform(self.scale, 1.0)
            if self.scale == 1.0:  # a flip alone: the whole input, no aspect change
                sx = sy = torch.ones_like(area)
            elif signal:
                sx, sy = area, torch.ones_like(area)
            else:
                ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
                sx, sy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
            tx, ty = (1 - sx) * uniform(-1.0, 1.0), (1 - sy) * uniform(-1.0, 1.0)
            flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.hflip else torch.ones_like(sx)
            zero = torch.zeros_like(sx)
            theta = torch.stack([torch.stack([sx * flip, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.jitter > 0:
            a = uniform(1 - self.jitter, 1 + self.jitter, 1, 1, 1)
            b = uniform(-self.jitter, self.jitter, 1, 1, 1)
            x = a.to(x.dtype) * x + b.to(x.dtype)
        if self.erase > 0:
            h, w = x.shape[-2:]
            eh = (uniform(0.2, 0.5) * h).ceil() if not signal else torch.ones(n, device=x.device)
            ew = (uniform(0.2, 0.5) * w).ceil()
            top = (uniform(0.0, 1.0) * (h - eh + 1)).floor()
            left = (uniform(0.0, 1.0) * (w - ew + 1)).floor()
            rows = torch.arange(h, device=x.device)[None, :, None]
            cols = torch.arange(w, device=x.device)[None, None, :]
            inside = (rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None])
            hit = uniform(0.0, 1.0) < self.erase
            x = x.masked_fill((inside & hit[:, None, None]).unsqueeze(1), 0.0)
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
        return x.squeeze(2) if signal else x


@dataclass(frozen=True)
class Chain:
    """Augmentations applied one after the other (the data's crop and flip, then strong views)."""

    parts: tuple[Any, ...]

    @property
    def enabled(self) -> bool:
        return any(p.enabled for p in self.parts)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for part in self.parts:
            if part.enabled:
                x = part(x, generator)
        return x
