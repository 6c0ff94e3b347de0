"""The Python entry points: ``train``, ``distill`` and ``evaluate`` on any ``nn.Module``.

They drive the same loop as ``distil run``::

    from distil import distill, evaluate, load_dataset, losses
    data = load_dataset("fashion_mnist")
    distill(teacher, student, data, terms=[losses.KD(T=4) * 0.9, losses.CE() * 0.1], epochs=10)
    print(evaluate(student, data.test))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields

import torch
from torch import nn

from distil.data import Augment, Dataset, Split
from distil.engine.evaluate import accuracy
from distil.engine.objective import Objective, TermSpec, build_objective, task_objective
from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
from distil.engine.trainer import EpochRecord, FitResult, TrainSettings, fit
from distil.losses import CE, KD, Term

_SETTINGS = {f.name for f in fields(TrainSettings)}


def _settings(options: dict) -> TrainSettings:
    unknown = sorted(set(options) - _SETTINGS)
    if unknown:
        raise TypeError(f"unknown training options {unknown}; accepted: {sorted(_SETTINGS)}")
    return TrainSettings(**options)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train(
    model: nn.Module,
    data: Dataset,
    *,
    seed: int = 0,
    label_smoothing: float = 0.0,
    augment: Augment | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    **options,
) -> FitResult:
    """Train ``model`` on the labels (cross-entropy); ``options`` are :class:`TrainSettings` fields."""
    device = _device_of(model)
    return fit(model, data.train.to(device), data.val.to(device), task_objective(label_smoothing), _settings(options), seed=seed, augment=augment, on_epoch=on_epoch)


def make_objective(
    teacher: nn.Module,
    student: nn.Module,
    data: Dataset,
    *,
    terms: Sequence[Term | TermSpec] | None = None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    seed: int = 0,
) -> Objective:
    """The objective :func:`distill` trains with: ``terms`` (ready terms, or specs as YAML writes
    them), by default ``KD(T) * alpha + CE() * (1 - alpha)``; taps resolved on ``data``'s first
    training inputs, connectors and loss parameters seeded by ``seed``. The same builder as
    ``distil run``'s, so the same terms and seed give the same connectors."""
    terms = list(terms) if terms is not None else [KD(T=temperature) * alpha, CE() * (1.0 - alpha)]
    probe = data.train.x[:8].to(_device_of(student))
    teacher_probe = None if data.train.x_teacher is None else data.train.x_teacher[:8].to(_device_of(student))  # paired data: the teacher's own inputs
    return build_objective(terms, student, teacher, probe, n_data=len(data.train), seed=seed, teacher_probe_x=teacher_probe)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: Dataset,
    *,
    terms: Sequence[Term | TermSpec] | None = None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    seed: int = 0,
    augment: Augment | None = None,
    cache: CacheSettings | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    **options,
) -> nn.Module:
    """Distil ``teacher`` into ``student`` (in place, returned for convenience).

    ``terms`` is the objective; by default Hinton's ``KD(T) * alpha + CE() * (1 - alpha)``. A term may
    read a tapped layer (``losses.AT().between("layer2", "layer3") * 1000``) or a group
    (``.between("stages")``); connectors are added where shapes differ and trained with the student.
    The teacher is frozen and its outputs are cached: exactly when ``augment`` is off, as pre-drawn
    views with it (``cache``: :class:`~distil.engine.teacher_outputs.CacheSettings`; in memory only
    unless ``cache.store`` is set). Paired data (``data.train.x_teacher``): the teacher sees its own
    inputs, the student ``x``. ``options`` are :class:`TrainSettings` fields: ``epochs``, ``lr``,
    ``precision="bf16"`` (forwards under bf16 autocast; see engine/precision.py), ...
    """
    device = _device_of(student)
    teacher.to(device).eval().requires_grad_(False)
    train_split, val_split = data.train.to(device), data.val.to(device)
    objective = make_objective(teacher, student, data, terms=terms, temperature=temperature, alpha=alpha, seed=seed)
    outputs = None
    if objective.uses_teacher:
        settings = cache if cache is not None else CacheSettings(store=False, seed=seed)
        outputs = teacher_outputs(
            teacher, train_split.x, augment, objective.teacher_taps, settings=settings, temperature=objective.temperature, exact_logits=objective.needs_exact_logits,
            teacher_x=train_split.x_teacher,
        )  # fmt: skip
    fit(student, train_split, val_split, objective, _settings(options), seed=seed, teacher=outputs, augment=augment, on_epoch=on_epoch)
    return student


def evaluate(model: nn.Module, split: Split) -> float:
    """Top-1 accuracy of ``model`` on a labelled split."""
    split = split.to(_device_of(model))
    return accuracy(model, split.x, split.y)
