"""Mixed inputs for function matching: mixup and cutmix pairs that can be pre-drawn and replayed.

Beyer et al. 2022 ("Knowledge distillation: A good teacher is patient and consistent") find that a
student matches its teacher best when both see the *same* aggressively augmented input and that input
is often *between* data points — "function matching" on mixed images:

- **mixup** (Zhang et al. 2018): ``x̃ = λ·x_i + (1 − λ)·x_j`` with ``λ ~ Beta(α, α)``;
- **cutmix** (Yun et al. 2019): ``x̃ = x_i`` with a box ``B`` of ``x_j`` pasted in at the same place;
  the box's side is ``√(1 − λ)`` of the image's (``λ ~ Beta(α, α)``), its centre uniform, clipped at
  the border, and ``λ`` is then set to the share of ``x_i`` that is left: ``λ = 1 − |B| / (H·W)``.
  Signals ``(N, C, L)`` get a segment of length ``(1 − λ)·L`` instead of a box.

A mixed input is fully described by :class:`MixParams` — the partner ``j`` (an index into the
*training set*, drawn uniformly, not a position in the batch), ``λ`` and the box — so that it can be
stored with a pre-drawn view (:class:`~distil.data.AugmentViews`, 14 bytes per view) and replayed for
the teacher (once, when the view cache is built) and for the student (every time it shows the view).
With ``prob < 1`` a sample is mixed with probability ``prob`` (else ``λ = 1``: itself); with both
mixup and cutmix on, a mixed sample is a cutmix pair with probability ``cutmix_share``.

:class:`Mixed` puts a mix in front of an ordinary augmentation: the pair is mixed first (from the
stored inputs), then cropped and flipped as one image. The labels of a mixed input are
``λ·onehot(y_i) + (1 − λ)·onehot(y_j)`` (:meth:`Mix.targets`), which ``CE`` reads as soft targets.

Every draw comes from the generator passed in (on the CPU), so a seed gives the same pairs anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from distil.data.augment import Augment
from distil.errors import DataError

#: a label that is not there (an unlabeled row: ``distil.losses.response.NO_LABEL``)
NO_LABEL = -100


def sample_gamma(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws of Gamma(``alpha``, 1) from ``generator`` (Marsaglia & Tsang 2000, vectorised rejection).

    ``torch.distributions`` takes no generator; this does, so pre-drawn views are reproducible. For
    ``alpha < 1``: ``Gamma(α) = Gamma(α + 1) · U^{1/α}``.
    """
    boost = alpha < 1
    a = alpha + 1 if boost else alpha
    d = a - 1 / 3
    c = 1 / math.sqrt(9 * d)
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while len(todo):
        z = torch.randn(len(todo), generator=generator, dtype=torch.float64)
        u = torch.rand(len(todo), generator=generator, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if boost:
        out = out * torch.rand(n, generator=generator, dtype=torch.float64) ** (1 / alpha)
    return out


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws of Beta(``alpha``, ``alpha``) from ``generator``: ``G₁ / (G₁ + G₂)`` (float32)."""
    a, b = sample_gamma(alpha, n, generator), sample_gamma(alpha, n, generator)
    return (a / (a + b).clamp_min(1e-300)).float()


@dataclass(frozen=True, eq=False)
class MixParams:
    """The pairs of a batch of ``N`` samples.

    ``partner`` int64 ``(N,)``: the training sample each is mixed with; ``lam`` float32 ``(N,)``: the
    share of the sample itself (1: not mixed); ``box`` int64 ``(N, 4)``: ``top, left, height, width``
    of the cutmix box (zero area: a mixup pair, or no pair when ``lam`` is 1).
    """

    partner: torch.Tensor
    lam: torch.Tensor
    box: torch.Tensor

    def __len__(self) -> int:
        return self.partner.shape[0]

    def to(self, device: torch.device | str) -> MixParams:
        return MixParams(self.partner.to(device), self.lam.to(device), self.box.to(device))

    @property
    def cut(self) -> torch.Tensor:
        """Which samples are cutmix pairs (bool ``(N,)``)."""
        return self.box[:, 2] * self.box[:, 3] > 0


@dataclass(frozen=True)
class Mix:
    """Mixup (``mixup = α``) and/or cutmix (``cutmix = α``) pairs; off when both are 0 (see the module docstring)."""

    mixup: float = 0.0
    cutmix: float = 0.0
    prob: float = 1.0
    cutmix_share: float = 0.5

    def __post_init__(self) -> None:
        for name in ("mixup", "cutmix"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DataError(f"{name} must be a Beta parameter alpha >= 0 (0: off), got {value!r}")
        for name in ("prob", "cutmix_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise DataError(f"{name} must be a probability in [0, 1], got {value!r}")

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup > 0 or self.cutmix > 0)

    #: bytes of one stored pair: partner int32, λ fp16, box 4 × int16
    view_bytes = 14

    def settings(self) -> list[Any]:
        """What a pair depends on besides its params (part of the view cache's key)."""
        return [self.mixup, self.cutmix, self.prob, self.cutmix_share]

    def sample(self, n: int, pool: int, size: tuple[int, int], generator: torch.Generator) -> MixParams:
        """Draw pairs for ``n`` samples: partners among ``pool`` training samples, images of ``size = (H, W)``
        (signals: ``(1, L)``). On the CPU; the same generator state gives the same pairs."""
        if pool < 1:
            raise DataError(f"mixing needs at least one training sample to pair with, got a pool of {pool}")
        h, w = size
        partner = torch.randint(0, pool, (n,), generator=generator)
        mixed = torch.rand(n, generator=generator) < self.prob
        if self.mixup > 0 and self.cutmix > 0:
            cut = torch.rand(n, generator=generator) < self.cutmix_share
        else:
            cut = torch.full((n,), self.cutmix > 0)
        cut &= mixed
        lam = torch.ones(n)
        box = torch.zeros(n, 4, dtype=torch.int64)
        if self.mixup > 0:
            lam = torch.where(mixed & ~cut, sample_beta(self.mixup, n, generator), lam)
        if self.cutmix > 0:
            share = 1 - sample_beta(self.cutmix, n, generator)  # of the partner
            if h == 1:  # a signal: a segment of the length
                bh, bw = torch.ones(n, dtype=torch.int64), (w * share).long()
            else:
                side = share.sqrt()
                bh, bw = (h * side).long(), (w * side).long()
            cy = torch.randint(0, h, (n,), generator=generator)
            cx = torch.randint(0, w, (n,), generator=generator)
            top, bottom = (cy - bh // 2).clamp(0, h), (cy + bh - bh // 2).clamp(0, h)
            left, right = (cx - bw // 2).clamp(0, w), (cx + bw - bw // 2).clamp(0, w)
            if h == 1:
                top, bottom = torch.zeros_like(cy), torch.ones_like(cy)
            cut_box = torch.stack([top, left, bottom - top, right - left], 1)
            box = torch.where(cut[:, None], cut_box, box)
            lam = torch.where(cut, 1 - (box[:, 2] * box[:, 3]).float() / (h * w), lam)
        return MixParams(partner, lam, box)

    def apply(self, x: torch.Tensor, partner_x: torch.Tensor, params: MixParams) -> torch.Tensor:
        """``x`` mixed with ``partner_x`` (row ``i`` with row ``i``, the inputs of ``params.partner``); a new tensor.

        mixup rows: ``λ·x + (1 − λ)·x_partner``; cutmix rows: ``x`` with the box of ``x_partner``. No
        synchronisation with the device: every row goes through the same arithmetic.
        """
        if x.dim() not in (3, 4):
            raise DataError(f"mixing needs inputs of shape (N, C, H, W) or (N, C, L), got {tuple(x.shape)}")
        if len(params) != len(x) or partner_x.shape != x.shape:
            raise DataError(f"mix params are for {len(params)} samples with partners {tuple(partner_x.shape)}, but the batch is {tuple(x.shape)}")
        params = params.to(x.device)
        signal = x.dim() == 3
        if signal:
            x, partner_x = x.unsqueeze(2), partner_x.unsqueeze(2)
        lam = params.lam.to(x.dtype)[:, None, None, None]
        blended = lam * x + (1 - lam) * partner_x
        h, w = x.shape[-2:]
        top, left, bh, bw = params.box.unbind(1)
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
        in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
        inside = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (N, 1, H, W)
        out = torch.where(inside, partner_x, torch.where(params.cut[:, None, None, None], x, blended))
        return out.squeeze(2) if signal else out

    def targets(self, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Soft targets ``λ·onehot(y) + (1 − λ)·onehot(y_partner)`` (float32 ``(N, C)``).

        A row whose own label is missing (``-100``), or whose partner's is and that is mixed (``λ < 1``),
        is all zeros: it carries no label (``CE`` leaves it out).
        """
        lam = lam.to(device=y.device, dtype=torch.float32)[:, None]
        own = F.one_hot(y.clamp_min(0), num_classes).float()
        other = F.one_hot(y_partner.clamp_min(0), num_classes).float()
        soft = lam * own + (1 - lam) * other
        labelled = (y != NO_LABEL) & ((y_partner != NO_LABEL) | (lam[:, 0] >= 1))
        return soft * labelled[:, None]

    def pack(self, params: MixParams) -> dict[str, torch.Tensor]:
        """``params`` as compact tensors: partner int32, λ fp16, box int16."""
        if len(params) and int(params.box.max()) > torch.iinfo(torch.int16).max:
            raise DataError("cutmix boxes of inputs larger than 32767 pixels cannot be stored compactly")
        return {"mix_partner": params.partner.to(torch.int32), "mix_lam": params.lam.half(), "mix_box": params.box.to(torch.int16)}

    def unpack(self, table: Mapping[str, torch.Tensor]) -> MixParams:
        """The params that :meth:`pack` stored (λ as stored: the teacher and the student see the same rounded λ)."""
        return MixParams(table["mix_partner"].long(), table["mix_lam"].float(), table["mix_box"].long())


@dataclass(frozen=True, eq=False)
class MixedParams:
    """A batch's pairs (``mix``) and its crop/flip (``base``, the params of the wrapped augmentation)."""

    base: Any
    mix: MixParams

    def __len__(self) -> int:
        return len(self.mix)


@dataclass(frozen=True)
class Mixed:
    """An augmentation ``base`` (crop and flip) after mixing each sample with a partner (``mix``).

    It follows :class:`~distil.data.Augment`, with one difference: :meth:`sample` takes the size of the
    pool the partners come from and :meth:`apply` the inputs they are read from (``source``, the
    training inputs; without it the batch is the pool). :attr:`mixes` tells the trainer and
    :class:`~distil.data.AugmentViews` to pass them.
    """

    base: Augment
    mix: Mix

    mixes = True

    @property
    def enabled(self) -> bool:
        return self.mix.enabled or self.base.enabled

    @property
    def view_bytes(self) -> int:
        return self.base.view_bytes + self.mix.view_bytes

    def settings(self) -> list[Any]:
        return [self.base.settings(), ["mix", *self.mix.settings()]]

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str | None = None, *, pool: int | None = None, size: tuple[int, int]) -> MixedParams:
        """Pairs (partners among ``pool`` samples, default ``n``) and crops/flips of ``n`` inputs of ``size``."""
        mix = self.mix.sample(n, n if pool is None else pool, size, generator)
        base = self.base.sample(n, generator)
        if device is not None:
            mix, base = mix.to(device), base.to(device)
        return MixedParams(base, mix)

    def apply(self, x: torch.Tensor, params: MixedParams, source: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` mixed with ``source[partner]`` (``source`` defaults to ``x``), then cropped and flipped."""
        source = x if source is None else source
        partner = params.mix.partner.to(source.device)
        mixed = self.mix.apply(x, source[partner].to(x.device), params.mix) if self.mix.enabled else x
        return self.base.apply(mixed, params.base)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Mix within the batch ``x`` (the pool is the batch), then crop and flip: for callers without the training set."""
        return self.apply(x, self.sample(len(x), generator, x.device, size=input_size(x)))

    def pack(self, params: MixedParams) -> dict[str, torch.Tensor]:
        return {**self.base.pack(params.base), **self.mix.pack(params.mix)}

    def unpack(self, table: Mapping[str, torch.Tensor]) -> MixedParams:
        return MixedParams(self.base.unpack({k: v for k, v in table.items() if not k.startswith("mix_")}), self.mix.unpack(table))


def input_size(x: torch.Tensor) -> tuple[int, int]:
    """``(H, W)`` of images ``(N, C, H, W)``, ``(1, L)`` of signals ``(N, C, L)``."""
    if x.dim() == 4:
        return int(x.shape[2]), int(x.shape[3])
    if x.dim() == 3:
        return 1, int(x.shape[2])
    raise DataError(f"mixing needs inputs of shape (N, C, H, W) or (N, C, L), got {tuple(x.shape)}")


@dataclass(frozen=True)
class MixedBatches:
    """The trainer's online path for a :class:`Mixed` augmentation: pairs drawn per batch from the whole training set."""

    augment: Mixed

    @classmethod
    def of(cls, augment: Any) -> MixedBatches | None:
        """The mixing of ``augment``, or ``None`` when it does not mix pairs (or mixing is off)."""
        if isinstance(augment, Mixed) and augment.mix.enabled:
            return cls(augment)
        return None

    def draw(self, x: torch.Tensor, source: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, MixParams]:
        """The batch ``x`` mixed with partners drawn among all of ``source``, cropped and flipped; and its pairs."""
        params = self.augment.sample(len(x), generator, x.device, pool=len(source), size=input_size(x))
        return self.augment.apply(x, params, source), params.mix

    def targets(self, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The soft targets of the pairs (:meth:`Mix.targets`)."""
        return self.augment.mix.targets(y, y_partner, lam, num_classes)
