"""Methods: named recipes of terms (paper defaults), and how term specs become an objective.

A method is data — a list of :class:`TermSpec` — not code: ``at`` is "CE + 1000 × AT on every stage".
Tap names may be groups resolved per model from one probe batch (``stages``, ``middle_stage``,
``last_stage``, ``embedding``; see :mod:`distil.engine.taps`), so a preset works on any architecture.
Loss arguments that depend on the models or data (``s_dim``, ``t_dim``, ``channels``, ``n_data``)
are filled in from the probed shapes when the spec leaves them out.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from distil.engine.objective import Objective, connect
from distil.engine.taps import LOGITS, probe_shapes, resolve_taps
from distil.losses import LOSSES, Term, build_loss
from distil.losses.schedules import SCHEDULES


@dataclass(frozen=True)
class TermSpec:
    """A term as data: loss name, weight, taps on each side, loss arguments, optional schedule."""

    loss: str
    weight: float = 1.0
    student: str = LOGITS
    teacher: str | None = None  # None: the same tap name as the student's
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule: Mapping[str, float] | None = None  # e.g. {"warmup": 0.1}, {"until": 0.2}, {"after": 0.2}


@dataclass(frozen=True)
class Method:
    description: str
    terms: tuple[TermSpec, ...]


def _ce(weight: float = 1.0) -> TermSpec:
    return TermSpec("CE", weight)


# Weights are the papers' (or RepDistiller's / mdistiller's reproductions of them) for CIFAR-style
# training; `distil methods` lists them and every one can be overridden per term in YAML.
METHODS: dict[str, Method] = {
    "scratch": Method("no teacher: cross-entropy on the labels", (_ce(),)),
    "kd": Method("Hinton 2015: 0.9 × T²·KL(T=4) + 0.1 × CE", (TermSpec("KD", 0.9, params={"T": 4.0}), _ce(0.1))),
    "dkd": Method("Zhao 2022 decoupled KD (α=1, β=8, T=4), warmed up over the first 10 % of training", (_ce(), TermSpec("DKD", 1.0, schedule={"warmup": 0.1}))),
    "dist": Method("Huang 2022 DIST (β=γ=1, τ=1) + CE", (_ce(), TermSpec("DIST", 1.0))),
    "lskd": Method("Sun 2024 KD on standardised logits (T=2), weight 9, + 0.1 × CE (mdistiller)", (_ce(0.1), TermSpec("LSKD", 9.0))),
    "logit_mse": Method("Ba & Caruana 2014 logit regression + CE", (_ce(), TermSpec("LogitMSE", 1.0))),
    "fitnet": Method("Romero 2015 hint on the middle stage (weight 100, connector) + CE", (_ce(), TermSpec("FitNet", 100.0, student="middle_stage"))),
    "at": Method("Zagoruyko 2017 attention transfer on every stage (β=1000) + CE", (_ce(), TermSpec("AT", 1000.0, student="stages"))),
    "nst": Method("Huang 2017 neuron selectivity transfer on the last stage (weight 50) + CE", (_ce(), TermSpec("NST", 50.0, student="last_stage"))),
    "vid": Method("Ahn 2019 variational information distillation on every stage + CE", (_ce(), TermSpec("VID", 1.0, student="stages"))),
    "sp": Method("Tung 2019 similarity-preserving on the last stage (γ=3000) + CE", (_ce(), TermSpec("SP", 3000.0, student="last_stage"))),
    "rkd": Method("Park 2019 relational KD (distance 25 + angle 50) on the embedding + CE", (_ce(), TermSpec("RKD", 1.0, student="embedding"))),
    # RepDistiller weighs PKT 30000 with a loss averaged over all b² pairs at batch 64; ours averages
    # the per-sample KL over b (the paper), so the same strength is 30000 / 64 ≈ 470.
    "pkt": Method("Passalis 2018 probabilistic knowledge transfer on the embedding (weight 470) + CE", (_ce(), TermSpec("PKT", 470.0, student="embedding"))),
    "cc": Method("Peng 2019 correlation congruence on the embedding (weight 0.02) + CE", (_ce(), TermSpec("CC", 0.02, student="embedding"))),
    "crd": Method("Tian 2020 contrastive representation distillation on the embedding (weight 0.8) + CE", (_ce(), TermSpec("CRD", 0.8, student="embedding"))),
    "crd+kd": Method("CRD (0.8) + KD (T=4, weight 1) + CE", (_ce(), TermSpec("KD", 1.0, params={"T": 4.0}), TermSpec("CRD", 0.8, student="embedding"))),
}


def list_methods() -> dict[str, str]:
    """Name → description with its terms, for ``distil methods``."""
    out = {}
    for name, method in METHODS.items():
        terms = " + ".join(f"{t.weight:g}×{t.loss}" + (f"@{t.student}" if t.student != LOGITS else "") for t in method.terms)
        out[name] = f"{method.description}  [{terms}]"
    return out


def _pairs(student_tap: str, teacher_tap: str | None, uses_teacher: bool, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor) -> list[tuple[str, str]]:
    """Concrete (student tap, teacher tap) pairs; groups pair stage by stage, from the last backwards."""
    s_taps = resolve_taps(student, x, student_tap)
    if not uses_teacher or teacher is None:
        return [(s, LOGITS) for s in s_taps]
    t_taps = resolve_taps(teacher, x, teacher_tap or student_tap)
    k = min(len(s_taps), len(t_taps))
    return list(zip(s_taps[len(s_taps) - k :], t_taps[len(t_taps) - k :]))


def _probe(terms: Sequence[tuple[str, str, bool]], student: nn.Module, teacher: nn.Module | None, x: torch.Tensor):
    s_shapes = probe_shapes(student, x, {s for s, _, _ in terms})
    t_shapes = probe_shapes(teacher, x, {t for _, t, uses in terms if uses}) if teacher is not None else {}
    return s_shapes, t_shapes


def connect_terms(terms: Sequence[Term], student: nn.Module, teacher: nn.Module | None, probe_x: torch.Tensor) -> Objective:
    """The objective of ready-made terms (Python API): tap groups expanded, connectors added."""
    expanded = []
    for term in terms:
        pairs = _pairs(term.student, term.teacher, term.loss.uses_teacher, student, teacher, probe_x)
        # A group expands to one term per stage; each gets its own copy of a loss that has state (VID).
        expanded += [replace(term, student=s, teacher=t, loss=term.loss if len(pairs) == 1 else copy.deepcopy(term.loss)) for s, t in pairs]
    s_shapes, t_shapes = _probe([(t.student, t.teacher, t.loss.uses_teacher) for t in expanded], student, teacher, probe_x)
    return connect(expanded, s_shapes, t_shapes)


def _inferred(loss: str, params: Mapping[str, Any], s_shape: torch.Size, t_shape: torch.Size | None, n_data: int) -> dict[str, Any]:
    """Fill the loss arguments that come from the models or the data, where the spec leaves them out."""
    known = {
        "s_dim": math.prod(s_shape[1:]),
        "t_dim": math.prod(t_shape[1:]) if t_shape is not None else None,
        "channels": t_shape[1] if t_shape is not None and len(t_shape) > 1 else None,
        "n_data": n_data,
    }
    accepted = inspect.signature(LOSSES[loss].__init__).parameters
    filled = {k: v for k, v in known.items() if k in accepted and k not in params and v is not None}
    return {**filled, **params}


def build_objective(specs: Sequence[TermSpec], student: nn.Module, teacher: nn.Module | None, probe_x: torch.Tensor, n_data: int) -> Objective:
    """Resolve taps, probe shapes, build the losses and the connectors: the objective a run trains with.

    Raises ``KeyError`` (unknown loss, schedule or tap, with what exists) or ``ValueError`` (arguments,
    shapes no connector can bridge), each naming the term.
    """
    expanded: list[tuple[int, TermSpec, str, str]] = []
    for i, spec in enumerate(specs):
        if spec.loss not in LOSSES:
            raise KeyError(f"term {i} ({spec.loss}): unknown loss; known losses: {', '.join(sorted(LOSSES))}")
        try:
            pairs = _pairs(spec.student, spec.teacher, LOSSES[spec.loss].uses_teacher, student, teacher, probe_x)
            expanded += [(i, spec, s, t) for s, t in pairs]
        except KeyError as err:
            raise KeyError(f"term {i} ({spec.loss}): {err.args[0]}") from None
    s_shapes, t_shapes = _probe([(s, t, LOSSES[spec.loss].uses_teacher) for _, spec, s, t in expanded], student, teacher, probe_x)
    terms = []
    for i, spec, s, t in expanded:
        params = _inferred(spec.loss, spec.params, s_shapes[s], t_shapes.get(t), n_data)
        try:
            loss = build_loss(spec.loss, **params)
        except (TypeError, ValueError) as err:
            raise ValueError(f"term {i} ({spec.loss}): {err}") from None
        term = Term(loss, float(spec.weight), s, t)
        if spec.schedule:
            (kind, fraction), *more = spec.schedule.items()
            if more or kind not in SCHEDULES:
                raise KeyError(f"term {i} ({spec.loss}): schedule must be one of {{{', '.join(f'{k}: FRACTION' for k in SCHEDULES)}}}, got {dict(spec.schedule)}")
            term = term.scheduled(SCHEDULES[kind](fraction))
        terms.append(term)
    return connect(terms, s_shapes, t_shapes)
