"""The sources of the teacher's outputs during distillation: a cache, or a forward per batch.

The teacher is frozen, so its outputs are a fixed function of its input. Three sources, cheapest first:

- :class:`CachedTeacher` (``exact``): inputs are not augmented, so every requested output (logits and
  any tapped layer) of every training sample is computed once, in fp32, bit for bit what the teacher
  gives; an epoch then costs a row lookup instead of a teacher forward (on a 2-core CPU a teacher pass
  over Fashion-MNIST costs several times a small student's training epoch).
- :class:`ViewCache` (``views``): inputs are augmented. As in FKD (Shen & Xing 2022), ``K`` views per
  sample are drawn in advance (:class:`~distil.data.AugmentViews`, 3 or 4 bytes each), the teacher's logits
  for each are stored compactly — the ``top_k`` largest in fp16, the other classes as one fp16 value
  that keeps their total probability mass at the objective's temperature — and replayed, one view per
  sample per epoch. Logits only: tapped feature maps of ``N × K`` views would rarely fit. With
  mixup / cutmix (:class:`~distil.data.mix.Mixed`) a view is a *pair*: its partner, ``λ`` and cutmix
  box are drawn with it and stored (14 more bytes), the teacher's logits are those of the mixed
  image, and the student is shown the same mixed image when it replays the view — function matching
  (Beyer et al. 2022) at the cost of a cache lookup.
- :class:`OnlineTeacher` (``online``): a no-grad forward on every batch, the fallback when a cache is
  not possible or does not fit ``max_bytes``.

Both caches are kept on disk (:mod:`distil.engine.teacher_store`) under a key made of the teacher's
weights, the data and the settings, so a second run with the same teacher and data skips the teacher
pass; a corrupt entry is detected by its hash and rebuilt.

Which source serves a run is decided by :func:`distil.engine.teacher_outputs.teacher_outputs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

from distil.data import Augment, AugmentViews
from distil.data.mix import input_size
from distil.data.tokens import length_order, trim
from distil.engine.evaluate import INFERENCE_BATCH
from distil.engine.taps import LOGITS, Taps, probe_shapes
from distil.engine.teacher_store import TeacherStore, cache_key


class TeacherOutputs(Protocol):
    """Teacher outputs for the batch of training samples ``index`` whose (augmented) inputs are ``x``.

    ``view`` is the pre-drawn view each sample shows (only when :attr:`views` is set: the trainer then
    replays those views instead of drawing new augmentations).
    """

    views: AugmentViews | None

    def __call__(self, index: torch.Tensor, x: torch.Tensor, view: torch.Tensor | None = None) -> dict[str, torch.Tensor]: ...


def _frozen(teacher: nn.Module) -> nn.Module:
    return teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _teacher_pass(
    teacher: nn.Module, x: torch.Tensor, taps: set[str], batch_size: int, transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Outputs of ``taps`` for all of ``x``, in batches under ``inference_mode``, in the rows' order.

    ``transform(xb, index)`` turns the stored rows ``index`` into the teacher's input (a view). Token
    inputs are visited in length order, each batch cut to its longest sentence: on text the teacher
    pass is the run's main cost. Concatenated outside inference mode: the results are ordinary
    tensors that losses may save for backward.
    """
    order = length_order(x)
    visit = torch.arange(len(x), device=x.device) if order is None else order.to(x.device)
    chunks: dict[str, list[torch.Tensor]] = {t: [] for t in taps}
    with torch.inference_mode(), Taps(teacher, taps) as tapped:
        for index in visit.split(batch_size):
            xb = x[index] if transform is None else transform(x[index], index)
            for k, v in tapped.forward(trim(xb)).items():
                chunks[k].append(v.contiguous())
    outputs = {k: torch.cat(v) for k, v in chunks.items()}
    if order is None:
        return outputs
    back = visit.argsort()
    return {k: v[back] for k, v in outputs.items()}


class CachedTeacher:
    """Every requested teacher output for every training sample, computed once in eval mode (exact, fp32)."""

    kind = "exact"
    views = None
    info: dict[str, Any]  # what was chosen and why (set by teacher_outputs)

    def __init__(
        self, teacher: nn.Module, x: torch.Tensor, taps: Iterable[str] = (LOGITS,), batch_size: int = INFERENCE_BATCH, store: TeacherStore | None = None
    ) -> None:
        teacher = _frozen(teacher)
        self.taps = sorted(set(taps) | {LOGITS})
        self.loaded = False
        key = cache_key(teacher, x, self.kind, {"taps": self.taps}) if store is not None else None
        outputs = store.load(key) if store is not None and key is not None else None
        if outputs is not None and set(outputs) == set(self.taps):
            self.outputs = {k: v.to(x.device) for k, v in outputs.items()}
            self.loaded = True
        else:
            self.outputs = _teacher_pass(teacher, x, set(self.taps), batch_size)
            if store is not None and key is not None:
                store.save(key, self.outputs, {"kind": self.kind, "taps": self.taps, "samples": len(x)})
        self.key = key

    def __call__(self, index: torch.Tensor, x: torch.Tensor, view: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.outputs.items()}

    @property
    def logits(self) -> torch.Tensor:
        return self.outputs[LOGITS]

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.outputs.values())


def encode_logits(logits: torch.Tensor, top_k: int, T: float) -> dict[str, torch.Tensor]:
    """Logits ``(B, C)`` → ``values`` fp16 ``(B, k)``, ``indices`` int16 ``(B, k)`` and ``rest`` fp16 ``(B,)``.

    With ``k ≥ C`` only the fp16 logits are kept (``values``, in class order). Otherwise ``rest`` is the
    logit that, given to each of the other ``C − k`` classes, keeps their total mass at temperature
    ``T``: ``rest = T · (logsumexp(z_rest / T) − log(C − k))``.
    """
    c = logits.shape[1]
    if top_k >= c:
        return {"values": logits.half()}
    values, indices = logits.topk(top_k, dim=1)
    others = logits.scatter(1, indices, float("-inf"))
    rest = T * (torch.logsumexp(others / T, dim=1) - math.log(c - top_k))
    return {"values": values.half(), "indices": indices.to(torch.int16), "rest": rest.half()}


def decode_logits(values: torch.Tensor, indices: torch.Tensor | None, rest: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """The fp32 logits :func:`encode_logits` stands for (the other classes share ``rest``)."""
    if indices is None or rest is None:
        return values.float()
    out = rest.float()[:, None].expand(-1, num_classes).clone()
    return out.scatter_(1, indices.long(), values.float())


class ViewCache:
    """FKD-style replay: ``K`` pre-drawn views per sample and the teacher's compressed logits for each.

    Tolerance: with ``top_k ≥ C`` the logits are the teacher's rounded to fp16 (relative error at most
    2⁻¹¹, so ``|Δz| ≤ 4.9e-4 · |z|``). With ``top_k < C`` the top-k logits are as exact, and the other
    classes each get the mean of their mass at temperature ``T``: the top-k probabilities and the
    residual mass at ``T`` match the teacher's, the split of the residual among those classes does not
    (FKD's "residual mass" approximation). Every loss on logits (KD, DKD, DIST, ...) reads the decoded
    logits, so the cache is used exactly like the exact one.
    """

    kind = "views"
    info: dict[str, Any]

    def __init__(
        self,
        teacher: nn.Module,
        x: torch.Tensor,
        augment: Augment,
        views: int = 4,
        top_k: int = 10,
        T: float = 1.0,
        seed: int = 0,
        batch_size: int = INFERENCE_BATCH,
        store: TeacherStore | None = None,
    ) -> None:
        teacher = _frozen(teacher)
        self.views = AugmentViews.draw(augment, len(x), views, seed, size=input_size(x) if getattr(augment, "mixes", False) else None)
        self.T = float(T)
        num_classes = probe_shapes(teacher, x[:1], {LOGITS})[LOGITS][1]
        self.num_classes = num_classes
        self.top_k = min(top_k, num_classes)
        self.taps = [LOGITS]
        self.loaded = False
        settings = {"views": views, "top_k": self.top_k, "T": self.T if self.top_k < num_classes else None, "seed": seed, "augment": augment.settings()}
        key = cache_key(teacher, x, self.kind, settings) if store is not None else None
        stored = store.load(key) if store is not None and key is not None else None
        if stored is not None and "values" in stored:
            self.tables = stored
            self.loaded = True
        else:
            self.tables = self._build(teacher, x, batch_size)
            if store is not None and key is not None:
                store.save(key, self.tables, {"kind": self.kind, "samples": len(x), **settings})
        self.key = key
        self.tables = {k: v.to(x.device) for k, v in self.tables.items()}
        self.views = self.views.to(x.device)

    def _build(self, teacher: nn.Module, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """One teacher pass per view; tables shaped ``(N, K, ...)``."""
        per_view = []
        for k in range(self.views.count):
            view = torch.full((len(x),), k, dtype=torch.int64)

            def as_view(xb: torch.Tensor, index: torch.Tensor, view: torch.Tensor = view) -> torch.Tensor:
                return self.views.apply(xb, index, view[index.cpu()].to(xb.device), source=x)

            logits = _teacher_pass(teacher, x, {LOGITS}, batch_size, as_view)[LOGITS]
            per_view.append(encode_logits(logits, self.top_k, self.T))
        return {name: torch.stack([v[name] for v in per_view], dim=1).contiguous() for name in per_view[0]}

    def __call__(self, index: torch.Tensor, x: torch.Tensor, view: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if view is None:
            raise ValueError("the view cache needs the view each sample shows; train with its pre-drawn views")
        t = self.tables
        rest = t["rest"][index, view] if "rest" in t else None
        indices = t["indices"][index, view] if "indices" in t else None
        return {LOGITS: decode_logits(t["values"][index, view], indices, rest, self.num_classes)}

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for v in self.tables.values()) + self.views.nbytes


class OnlineTeacher:
    """A no-grad, eval-mode teacher forward on every batch.

    ``no_grad`` rather than ``inference_mode``: feature losses save the teacher's tensors for backward,
    which inference tensors do not allow.
    """

    kind = "online"
    views = None
    info: dict[str, Any]

    def __init__(self, teacher: nn.Module, taps: Iterable[str] = (LOGITS,)) -> None:
        self.teacher = _frozen(teacher)
        self.taps = set(taps) | {LOGITS}

    def __call__(self, index: torch.Tensor, x: torch.Tensor, view: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        with torch.no_grad(), Taps(self.teacher, self.taps) as tapped:
            # ``x`` is the batch the student sees (token batches already cut by the trainer).
            return tapped.forward(x)
