"""Where the teacher's outputs come from during distillation: the cheapest source of
:mod:`distil.engine.teacher_sources` (exact cache, pre-drawn views, online forward) that the ``cache:``
settings, the augmentation and the objective's taps allow, with what it would cost in memory.

Paired data (cross-modal distillation, ``teacher_x``): the teacher sees its own input of each sample,
``teacher_x[index]``, never the student's; it sees it un-augmented (the student's augmentation applies
to the student's input only), so its outputs are a fixed function of the row and the exact cache
serves them even when the student's inputs are augmented (:func:`plan_paired_outputs`).

:func:`plan_teacher_outputs` decides from a probe batch alone; :func:`teacher_outputs` then builds (or
loads from disk) the chosen source and records the choice and its reason in the source's ``info``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distil.data import Augment
from distil.data.tokens import is_tokens
from distil.engine.taps import LOGITS, probe_shapes
from distil.engine.teacher_sources import CachedTeacher, OnlineTeacher, ViewCache
from distil.engine.teacher_store import TeacherStore
from distil.engine.view_teacher import ViewTeacher

#: Default cap on what a cache may hold (all its tensors, in memory or mapped from disk).
CACHE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class CacheSettings:
    """How teacher outputs are obtained (the ``cache:`` section of the config).

    ``mode``: ``auto`` (exact cache without augmentation, pre-drawn views with it when the objective
    reads only logits, online otherwise), or force ``exact``, ``views`` or ``online`` (a forced cache
    that is impossible or over ``max_bytes`` falls back to online, and the summary says why).
    ``dir=None`` means ``$DISTIL_CACHE`` or ``~/.cache/distil/teacher``; ``store=False`` keeps caches in
    memory only. ``temperature``: where the view cache keeps the residual mass exact; ``None`` takes
    the objective's (the ``T`` of its logit terms).
    """

    mode: str = "auto"
    views: int = 4
    top_k: int = 10
    max_bytes: int = CACHE_BYTES
    dir: str | None = None
    store: bool = True
    seed: int = 0
    temperature: float | None = None


def cache_bytes(teacher: nn.Module, x: torch.Tensor, taps: Iterable[str]) -> int:
    """What the exact cache of ``taps`` for all of ``x`` would take, from the shapes of a probe batch of one."""
    shapes = probe_shapes(teacher, x[:1], set(taps) | {LOGITS})
    return len(x) * sum(math.prod(s[1:]) * 4 for s in shapes.values())


def view_cache_bytes(n: int, num_classes: int, views: int, top_k: int, view_bytes: int = 3) -> int:
    """What the view cache takes: per view ``view_bytes`` of parameters (the augmentation's) plus the compressed logits."""
    k = min(top_k, num_classes)
    logits = 2 * num_classes if k >= num_classes else 2 * k + 2 * k + 2
    return n * views * (logits + view_bytes) + n * 8


@dataclass
class TeacherOutputsPlan:
    """The source chosen for a run, and why (reported in the summary's ``teacher_outputs``)."""

    kind: str
    reason: str
    bytes: int = 0


def plan_teacher_outputs(
    teacher: nn.Module, x: torch.Tensor, augment: Augment | None, taps: Iterable[str], settings: CacheSettings, exact_logits: bool = False
) -> TeacherOutputsPlan:
    """Decide which source serves this run (without computing anything but a probe batch).

    ``exact_logits``: a term reads every teacher logit as it is (``Objective.needs_exact_logits``), which
    the view cache's compressed logits are not."""
    taps = set(taps) | {LOGITS}
    augmented = augment is not None and augment.enabled
    mode = settings.mode
    if mode == "online":
        return TeacherOutputsPlan("online", "cache.mode is online")
    if is_tokens(x):
        shapes = probe_shapes(teacher, x[:1], taps)
        per_token = sorted(t for t, s in shapes.items() if len(s) > 2)
        if per_token:
            what = "logits" if per_token == [LOGITS] else "features"
            return TeacherOutputsPlan("online", f"the teacher {what} {per_token} are per token: their length differs from batch to batch, so they are computed with each batch")
    if mode == "exact" or (mode == "auto" and not augmented):
        if augmented:
            return TeacherOutputsPlan("online", "cache.mode is exact, but training inputs are augmented (use views)")
        need = cache_bytes(teacher, x, taps)
        if need > settings.max_bytes:
            return TeacherOutputsPlan("online", f"the exact cache would take {need:,} bytes > cache.max_bytes {settings.max_bytes:,}")
        return TeacherOutputsPlan("exact", "training inputs are not augmented", need)
    if not augmented:
        return TeacherOutputsPlan("exact", "training inputs are not augmented, so views are not needed", cache_bytes(teacher, x, taps))
    if taps != {LOGITS}:
        return TeacherOutputsPlan("online", f"the objective reads teacher features {sorted(taps - {LOGITS})}; pre-drawn views cache logits only")
    if exact_logits:
        return TeacherOutputsPlan("online", "a term reads the teacher's logits exactly (a discriminator); pre-drawn views keep only the top-k logits")
    num_classes = probe_shapes(teacher, x[:1], {LOGITS})[LOGITS][1]
    need = view_cache_bytes(len(x), num_classes, settings.views, settings.top_k, augment.view_bytes)
    if need > settings.max_bytes:
        return TeacherOutputsPlan("online", f"the view cache would take {need:,} bytes > cache.max_bytes {settings.max_bytes:,}")
    return TeacherOutputsPlan("views", f"training inputs are augmented: {settings.views} pre-drawn views per sample", need)


def plan_paired_outputs(teacher: nn.Module, teacher_x: torch.Tensor, taps: Iterable[str], settings: CacheSettings) -> TeacherOutputsPlan:
    """The source for paired data: the exact cache of the teacher's own inputs, unless ``cache.mode`` is
    online or the cache would not fit ``max_bytes`` (then a forward on ``teacher_x[index]`` per batch)."""
    taps = set(taps) | {LOGITS}
    if settings.mode == "online":
        return TeacherOutputsPlan("online", "cache.mode is online; paired inputs: the teacher sees its own input of each sample")
    need = cache_bytes(teacher, teacher_x, taps)
    if need > settings.max_bytes:
        return TeacherOutputsPlan("online", f"the exact cache of the teacher's paired inputs would take {need:,} bytes > cache.max_bytes {settings.max_bytes:,}")
    views = " (cache.mode views: nothing to pre-draw)" if settings.mode == "views" else ""
    return TeacherOutputsPlan("exact", f"paired inputs: the teacher sees its own input of each sample, un-augmented{views}", need)


def teacher_outputs(
    teacher: nn.Module,
    train_x: torch.Tensor,
    augment: Augment | bool | None = None,
    taps: Iterable[str] = (LOGITS,),
    settings: CacheSettings | None = None,
    temperature: float = 1.0,
    exact_logits: bool = False,
    teacher_x: torch.Tensor | None = None,
) -> CachedTeacher | ViewCache | OnlineTeacher | ViewTeacher:
    """The cheapest source of teacher outputs the settings allow (see :func:`plan_teacher_outputs`).

    ``taps``, ``temperature`` and ``exact_logits`` are the objective's (``objective.teacher_taps``,
    ``objective.temperature``, ``objective.needs_exact_logits``). ``augment=True`` (a bool, no augmentation object) means augmented
    inputs whose views cannot be pre-drawn: the online teacher. Builds the cache (or loads it from
    disk) and records the choice in the returned object's ``info``.

    ``teacher_x`` (paired data): the teacher's own inputs, row for row with ``train_x``; the teacher
    then sees ``teacher_x[index]`` (un-augmented) instead of the student's batch.
    """
    settings = settings or CacheSettings(store=False)
    if teacher_x is not None:
        return _paired_outputs(teacher, teacher_x, taps, settings)
    if augment is True:
        augment, settings = None, replace(settings, mode="online")
    elif augment is False:
        augment = None
    taps = set(taps) | {LOGITS}
    plan = plan_teacher_outputs(teacher, train_x, augment, taps, settings, exact_logits)
    store = TeacherStore(settings.dir) if settings.store else None
    start = time.perf_counter()
    outputs: CachedTeacher | ViewCache | OnlineTeacher
    if plan.kind == "exact":
        outputs = CachedTeacher(teacher, train_x, taps, store=store)
    elif plan.kind == "views":
        assert augment is not None
        T = settings.temperature if settings.temperature is not None else temperature
        outputs = ViewCache(teacher, train_x, augment, settings.views, settings.top_k, T, settings.seed, store=store)
    else:
        outputs = OnlineTeacher(teacher, taps)
    info: dict[str, Any] = {"kind": plan.kind, "reason": plan.reason, "taps": sorted(taps)}
    if plan.kind != "online":
        seconds = time.perf_counter() - start
        passes = len(train_x) * (outputs.views.count if isinstance(outputs, ViewCache) else 1)
        info.update(
            bytes=outputs.nbytes,  # type: ignore[union-attr]
            max_bytes=settings.max_bytes,
            seconds=round(seconds, 2),
            inputs=passes,  # teacher forwards: samples × views
            inputs_per_second=None if outputs.loaded else round(passes / max(seconds, 1e-9), 1),  # type: ignore[union-attr]
            from_disk=outputs.loaded,  # type: ignore[union-attr]
            file=str(Path(store.paths(outputs.key)[0])) if store is not None and outputs.key else None,  # type: ignore[union-attr]
        )
    if isinstance(outputs, ViewCache):
        info.update(views=outputs.views.count, top_k=outputs.top_k, T=outputs.T)
    outputs.info = info
    return outputs


def _paired_outputs(teacher: nn.Module, teacher_x: torch.Tensor, taps: Iterable[str], settings: CacheSettings) -> CachedTeacher | ViewTeacher:
    """Paired data: the exact cache of ``teacher_x``, or the teacher run on ``teacher_x[index]`` with each batch."""
    taps = set(taps) | {LOGITS}
    plan = plan_paired_outputs(teacher, teacher_x, taps, settings)
    info: dict[str, Any] = {"kind": plan.kind, "reason": plan.reason, "taps": sorted(taps), "paired": True}
    if plan.kind == "online":
        return ViewTeacher(teacher, teacher_x, None, taps, seed=settings.seed, details=info)
    store = TeacherStore(settings.dir) if settings.store else None
    start = time.perf_counter()
    cached = CachedTeacher(teacher, teacher_x, taps, store=store)
    seconds = time.perf_counter() - start
    info.update(
        bytes=cached.nbytes,
        max_bytes=settings.max_bytes,
        seconds=round(seconds, 2),
        inputs=len(teacher_x),
        inputs_per_second=None if cached.loaded else round(len(teacher_x) / max(seconds, 1e-9), 1),
        from_disk=cached.loaded,
        file=str(Path(store.paths(cached.key)[0])) if store is not None and cached.key else None,
    )
    cached.info = info
    return cached
