"""Batched augmentation: random crop (after padding) and horizontal flip of a whole batch at once.

Drawing the random choices (:meth:`BatchAugment.sample`) is separate from applying them
(:meth:`BatchAugment.apply`), so a view can be reproduced later from its :class:`AugmentParams`.
Applying is one pad and one gather with computed indices: no Python loop over samples, and it runs
wherever ``x`` lives.

Inputs are ``(N, C, H, W)`` images or ``(N, C, L)`` signals. For signals the crop is a shift along
``L`` (``dx``; ``dy`` is drawn but unused) and the flip reverses ``L``.

Padding value: 0 in the *normalized* space, i.e. the per-channel training mean. The data are already
normalized when they reach the trainer and this class does not know the dataset's statistics; a
mean-valued border is also the neutral input for the first layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distil.errors import DataError


@dataclass(frozen=True, eq=False)
class AugmentParams:
    """What was drawn for a batch of ``N`` samples.

    ``dy``/``dx`` (int64 ``(N,)``, in ``[0, 2 * crop_padding]``) are the offsets of each crop window in
    the padded input, so ``crop_padding`` means "not shifted"; ``flip`` (bool ``(N,)``) marks the
    samples that are flipped horizontally (after cropping).
    """

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor

    def __len__(self) -> int:
        return self.dx.shape[0]

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(self.dy.to(device), self.dx.to(device), self.flip.to(device))


@dataclass(frozen=True)
class BatchAugment:
    """Random crop with zero padding of ``crop_padding`` pixels, and random horizontal flip.

    With ``crop_padding=0`` and ``hflip=False`` it is the identity and :attr:`enabled` is False.
    The same generator state gives the same output.
    """

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise DataError(f"crop_padding must be an int >= 0, got {self.crop_padding!r}")
        if not isinstance(self.hflip, bool):
            raise DataError(f"hflip must be True or False, got {self.hflip!r}")

    @property
    def enabled(self) -> bool:
        """Whether this changes inputs at all (if not, teacher outputs can be cached)."""
        return self.crop_padding > 0 or self.hflip

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str | None = None) -> AugmentParams:
        """Draw the crop offsets and flips of ``n`` samples from ``generator``; put them on ``device``.

        Drawn on the generator's device (a CPU generator works for a CUDA batch), then moved.
        Nothing is drawn for a disabled part, so enabling only the flip does not consume crop draws.
        """
        where = generator.device
        p = self.crop_padding
        if p > 0:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=where)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=where)
        else:
            dy = dx = torch.zeros(n, dtype=torch.int64, device=where)
        if self.hflip:
            flip = torch.rand(n, generator=generator, device=where) < 0.5
        else:
            flip = torch.zeros(n, dtype=torch.bool, device=where)
        params = AugmentParams(dy, dx, flip)
        return params if device is None else params.to(device)

    def apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """``x`` with the crops and flips of ``params`` (one set per sample) applied; a new tensor.

        Offsets are not range-checked here (that would synchronise with the device on every batch);
        params from :meth:`sample` with the same ``crop_padding`` are always in range.
        """
        if not self.enabled:
            return x
        if x.dim() not in (3, 4):
            raise DataError(f"augmentation needs inputs of shape (N, C, H, W) or (N, C, L), got {tuple(x.shape)}")
        if len(params) != len(x):
            raise DataError(f"augment params are for {len(params)} samples but the batch has {len(x)}")
        params = params.to(x.device)
        p = self.crop_padding
        n, c = x.shape[:2]
        width = x.shape[-1]
        # Column indices of each window in the padded input; a flip reads the same window backwards.
        # (N, W), one gather below does crop and flip together.
        steps = torch.arange(width, device=x.device)
        cols = params.dx[:, None] + torch.where(params.flip[:, None], width - 1 - steps, steps)
        batch = torch.arange(n, device=x.device)
        channel = torch.arange(c, device=x.device)
        if x.dim() == 3:
            padded = F.pad(x, (p, p)) if p else x
            return padded[batch[:, None, None], channel[None, :, None], cols[:, None, :]]
        height = x.shape[2]
        rows = params.dy[:, None] + torch.arange(height, device=x.device)  # (N, H)
        padded = F.pad(x, (p, p, p, p)) if p else x
        return padded[batch[:, None, None, None], channel[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Draw params for the batch ``x`` from ``generator`` and apply them (identity if disabled)."""
        if not self.enabled:
            return x
        return self.apply(x, self.sample(len(x), generator, device=x.device))
