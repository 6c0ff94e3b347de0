"""SpecAugment's frequency and time masking on whole batches of spectrograms, replayable from cached views.

Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition"
(arXiv:1904.08779), §2: on a log-mel spectrogram of ``ν`` mel channels and ``τ`` frames,

* frequency masking, ``freq_masks`` times: ``f ~ U{0, …, F}``, ``f0 ~ U{0, …, ν − f}``; channels
  ``[f0, f0 + f)`` are masked;
* time masking, ``time_masks`` times: ``t ~ U{0, …, T}``, ``t0 ~ U{0, …, τ − t}``; frames
  ``[t0, t0 + t)`` are masked;

with ``F = freq_width`` and ``T = time_width``. A masked value becomes 0, the training mean of the
normalized features (the paper also uses the mean). Time warping, the paper's third part and the one
it found least useful, is left out.

It follows the :class:`~distil.data.augment.Augment` protocol: :meth:`SpecAugment.sample` draws the
starts and widths (int16, ``view_bytes`` = 4 per mask) that :class:`~distil.data.augment.AugmentViews`
stores, so the teacher's logits on K pre-drawn masked views are cached and replayed like crops of
images. Inputs are ``(N, C, ν, τ)``: the frequency axis is H, time is W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from distil.errors import DataError


@dataclass(frozen=True, eq=False)
class MaskParams:
    """Starts and widths ``(N, masks)`` (int64) of each sample's frequency and time masks."""

    freq_start: torch.Tensor
    freq_width: torch.Tensor
    time_start: torch.Tensor
    time_width: torch.Tensor

    def __len__(self) -> int:
        return self.freq_start.shape[0]

    def to(self, device: torch.device | str) -> MaskParams:
        return MaskParams(*(t.to(device) for t in (self.freq_start, self.freq_width, self.time_start, self.time_width)))


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks on ``(N, C, n_freq, n_time)`` inputs (module docstring)."""

    n_freq: int
    n_time: int
    freq_masks: int = 0
    freq_width: int = 0
    time_masks: int = 0
    time_width: int = 0

    def __post_init__(self) -> None:
        for name in ("n_freq", "n_time", "freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name.startswith("n_") else 0):
                raise DataError(f"SpecAugment {name} must be a non-negative int, got {value!r}")
        if self.freq_width > self.n_freq or self.time_width > self.n_time:
            raise DataError(
                f"SpecAugment widths (freq_width {self.freq_width}, time_width {self.time_width}) must fit the input's "
                f"{self.n_freq} frequency channels × {self.n_time} frames"
            )
        if max(self.n_freq, self.n_time) > 32767:
            raise DataError("SpecAugment stores starts as int16: inputs of at most 32767 channels or frames")

    @property
    def enabled(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)

    @property
    def view_bytes(self) -> int:
        """int16 start and width of every mask."""
        return 4 * (self.freq_masks + self.time_masks)

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str | None = None) -> MaskParams:
        """Draw ``n`` samples' masks from ``generator`` (on its device), then move them to ``device``."""
        where = generator.device

        def draw(masks: int, width: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
            w = torch.randint(0, width + 1, (n, masks), generator=generator, device=where)
            start = (torch.rand(n, masks, generator=generator, device=where) * (size - w + 1)).floor().long()
            return start, w

        params = MaskParams(*draw(self.freq_masks, self.freq_width, self.n_freq), *draw(self.time_masks, self.time_width, self.n_time))
        return params if device is None else params.to(device)

    def apply(self, x: torch.Tensor, params: MaskParams) -> torch.Tensor:
        """``x`` with each sample's masked channels and frames set to 0; a new tensor."""
        if not self.enabled:
            return x
        if x.dim() != 4 or x.shape[2:] != (self.n_freq, self.n_time):
            raise DataError(f"SpecAugment expects spectrograms of shape (N, C, {self.n_freq}, {self.n_time}), got {tuple(x.shape)}")
        if len(params) != len(x):
            raise DataError(f"SpecAugment params are for {len(params)} samples but the batch has {len(x)}")
        p = params.to(x.device)
        freq = _covered(p.freq_start, p.freq_width, self.n_freq)  # (N, n_freq)
        time = _covered(p.time_start, p.time_width, self.n_time)  # (N, n_time)
        return x.masked_fill(freq[:, None, :, None] | time[:, None, None, :], 0.0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.enabled:
            return x
        return self.apply(x, self.sample(len(x), generator, device=x.device))

    def pack(self, params: MaskParams) -> dict[str, torch.Tensor]:
        return {
            "freq_start": params.freq_start.to(torch.int16),
            "freq_width": params.freq_width.to(torch.int16),
            "time_start": params.time_start.to(torch.int16),
            "time_width": params.time_width.to(torch.int16),
        }

    def unpack(self, table: Mapping[str, torch.Tensor]) -> MaskParams:
        return MaskParams(table["freq_start"].long(), table["freq_width"].long(), table["time_start"].long(), table["time_width"].long())

    def settings(self) -> list[Any]:
        return ["specaugment", self.n_freq, self.n_time, self.freq_masks, self.freq_width, self.time_masks, self.time_width]


def _covered(start: torch.Tensor, width: torch.Tensor, size: int) -> torch.Tensor:
    """bool ``(N, size)``: positions inside any of the ``(N, masks)`` intervals ``[start, start + width)``."""
    pos = torch.arange(size, device=start.device)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return inside.any(dim=1)
