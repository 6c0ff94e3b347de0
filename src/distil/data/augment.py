"""Batched augmentation: random crop (after padding) and horizontal flip of a whole batch at once;
the :class:`Augment` protocol every augmentation follows, and :class:`AugmentViews` (pre-drawn views).

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from distil.errors import DataError


@runtime_checkable
class Augment(Protocol):
    """What the trainer and the view cache need of an augmentation (:class:`BatchAugment`, ``TextAugment``).

    Drawing (:meth:`sample`) is separate from applying (:meth:`apply`), so that a view can be replayed;
    :meth:`pack` turns drawn params into compact per-sample tensors (what :class:`AugmentViews` keeps
    for each view, :attr:`view_bytes` bytes in all) and :meth:`unpack` turns rows of them back.
    :meth:`settings` is everything besides the params that a view depends on (JSON-able): it is part
    of the teacher caches' keys.
    """

    @property
    def enabled(self) -> bool: ...

    @property
    def view_bytes(self) -> int: ...

    def sample(self, n: int, generator: torch.Generator, device: torch.device | str | None = None) -> Any: ...

    def apply(self, x: torch.Tensor, params: Any) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def pack(self, params: Any) -> dict[str, torch.Tensor]: ...

    def unpack(self, table: Mapping[str, torch.Tensor]) -> Any: ...

    def settings(self) -> Any: ...


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

    @property
    def view_bytes(self) -> int:
        """Bytes of one stored view: the two offsets as uint8 and the flip as bool."""
        return 3

    def pack(self, params: AugmentParams) -> dict[str, torch.Tensor]:
        """``params`` as compact tensors: ``dy``/``dx`` uint8, ``flip`` bool (``crop_padding`` at most 127)."""
        if 2 * self.crop_padding > 255:
            raise DataError(f"crop_padding {self.crop_padding} is too large to store views compactly (at most 127)")
        return {"dy": params.dy.to(torch.uint8), "dx": params.dx.to(torch.uint8), "flip": params.flip}

    def unpack(self, table: Mapping[str, torch.Tensor]) -> AugmentParams:
        """The params that :meth:`pack` stored (any leading shape)."""
        return AugmentParams(table["dy"].long(), table["dx"].long(), table["flip"])

    def settings(self) -> list[Any]:
        """``[crop_padding, hflip]``: what a view depends on besides its params (part of cache keys)."""
        return [self.crop_padding, self.hflip]


@dataclass(frozen=True, eq=False)
class AugmentViews:
    """``K`` pre-drawn augmented views of each of ``N`` samples, as compact parameters.

    FKD (Shen & Xing 2022) fixes the augmented views in advance so the teacher's soft labels for them
    can be computed once and replayed. The parameters come from one generator seeded with ``seed``, so
    view ``k`` of sample ``i`` is the same in every run. Each epoch a sample shows view
    ``(epoch + offset[i]) mod K``: over ``K`` epochs it shows every view once, and within an epoch the
    samples show different views (``offset`` is drawn from the same generator).

    ``table`` holds what the augmentation's :meth:`~Augment.pack` makes of the params, each tensor
    shaped ``(N, K)``: crop offsets and flip (3 bytes per view) for :class:`BatchAugment`, one seed
    (4 bytes) for ``TextAugment``.
    """

    augment: Augment
    table: dict[str, torch.Tensor]  # name → (N, K, ...)
    offset: torch.Tensor  # int64 (N,)
    seed: int

    @classmethod
    def draw(cls, augment: Augment, n: int, k: int, seed: int, size: tuple[int, int] | None = None) -> AugmentViews:
        """Draw ``k`` views of ``n`` samples from a generator seeded with ``seed`` (on the CPU).

        An augmentation that mixes pairs (``augment.mixes``, :class:`~distil.data.mix.Mixed`) draws each
        view's partner among the ``n`` samples; it needs the inputs' ``size`` (``(H, W)``, or ``(1, L)``).
        """
        if k < 1:
            raise DataError(f"the number of pre-drawn views must be >= 1, got {k}")
        generator = torch.Generator().manual_seed(seed)
        if getattr(augment, "mixes", False):
            if size is None:
                raise DataError("views that mix pairs need the inputs' size to draw cutmix boxes (AugmentViews.draw(size=...))")
            packed = augment.pack(augment.sample(n * k, generator, pool=n, size=size))  # type: ignore[call-arg]
        else:
            packed = augment.pack(augment.sample(n * k, generator))
        offset = torch.randint(0, k, (n,), generator=generator)
        return cls(augment, {name: t.reshape(n, k, *t.shape[1:]) for name, t in packed.items()}, offset, seed)

    @property
    def count(self) -> int:
        """``K``, the number of views per sample."""
        return next(iter(self.table.values())).shape[1]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.table.values(), self.offset))

    def view_of(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """Which view each sample of ``index`` shows in ``epoch`` (int64, on ``index``'s device)."""
        return (self.offset[index.to(self.offset.device)].to(index.device) + epoch) % self.count

    def params(self, index: torch.Tensor, view: torch.Tensor) -> Any:
        """The augmentation's params of view ``view[j]`` of sample ``index[j]``, on ``index``'s device."""
        device = index.device
        where = self.offset.device
        index, view = index.to(where), view.to(where)
        return self.augment.unpack({name: t[index, view].to(device) for name, t in self.table.items()})

    def to(self, device: torch.device | str) -> AugmentViews:
        """The same views with their tables on ``device`` (where the training batches are)."""
        return AugmentViews(self.augment, {name: t.to(device) for name, t in self.table.items()}, self.offset.to(device), self.seed)

    def apply(self, x: torch.Tensor, index: torch.Tensor, view: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (the stored samples ``index``) as the views ``view``.

        ``source``: the stored inputs the views' partners are read from (all ``N``; needed when the views mix pairs).
        """
        return self.batch(x, index, view, source)[0]

    def batch(self, x: torch.Tensor, index: torch.Tensor, view: torch.Tensor, source: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """``x`` as the views ``view`` and the params of its pairs (``None`` when the views do not mix)."""
        params = self.params(index, view)
        if not getattr(self.augment, "mixes", False):
            return self.augment.apply(x, params), None
        if source is None:
            raise DataError("these views mix pairs: apply them with the stored inputs the partners come from (source=)")
        return self.augment.apply(x, params, source), params.mix  # type: ignore[call-arg]
