"""An objective is a weighted sum of terms; a method is nothing more than its list of terms.

Each term reads one tensor of the student's outputs and (for teacher terms) one of the teacher's —
``"logits"`` or a tapped layer — passes the student side through a connector where the loss needs
equal shapes, and is weighted by ``weight × schedule(progress)``.

:func:`build_objective` is the one way an objective is made — from YAML term specs (a method
preset adjusted by ``distill.terms``), from ready-made :class:`~distil.losses.Term` values (the
Python API, compress recovery) or a mix: ``specs → terms → taps → connectors``, seeded in one place.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from distil.data.tokens import is_tokens
from distil.engine.connectors import build_connector, build_token_connector
from distil.engine.precision import full_precision
from distil.engine.taps import LOGITS, length_axes, probe_shapes, resolve_taps
from distil.losses import CE, LOSSES, Term, build_loss
from distil.losses.schedules import SCHEDULES


class Connectors(nn.ModuleDict):
    """The connectors by term name. A term name holds its taps' module paths (``fitnet@layers.1``), but
    a module's name may not contain ``.``, so it is stored with ``/`` in its place (``connectors.fitnet@layers/1.weight``)."""

    def __getitem__(self, name: str) -> nn.Module:
        return super().__getitem__(name.replace(".", "/"))

    def __setitem__(self, name: str, module: nn.Module) -> None:
        super().__setitem__(name.replace(".", "/"), module)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.replace(".", "/"))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:  # type: ignore[override]
        return [k.replace("/", ".") for k in self._modules]

    def items(self) -> list[tuple[str, nn.Module]]:  # type: ignore[override]
        return list(zip(self.keys(), self.values()))


class Objective(nn.Module):
    """``loss = Σ_k w_k(progress) · loss_k(connector_k(student[s_k]), teacher[t_k])``, each term by name."""

    def __init__(self, terms: Iterable[Term], connectors: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.terms = list(terms)
        if not self.terms:
            raise ValueError("an objective needs at least one term")
        self.names = _unique_names(_term_name(t) for t in self.terms)
        # Registered so that losses with parameters (VID, CRD heads) and connectors train and move with it.
        self.losses = nn.ModuleList(t.loss for t in self.terms)
        self.connectors = Connectors(connectors or {})
        #: names of the terms whose two features are per token, (B, L, ...) on both sides: compared at
        #: ``positions`` only, as per-token logits are (set by :func:`connect` from the probed length axes)
        self.token_terms: set[str] = set()

    @property
    def temperature(self) -> float:
        """The temperature at which the teacher's logits are compared: ``T`` (or ``tau``) of the first
        term that reads the teacher's logits and has one (``T=None``, raw logits, is none), else 1. An
        ensemble averages its members' soft targets at it, and the view cache keeps the residual mass exact at it."""
        for term in self.terms:
            if term.loss.uses_teacher and term.teacher == LOGITS:
                for attr in ("T", "tau"):
                    if getattr(term.loss, attr, None) is not None:
                        return float(getattr(term.loss, attr))
        return 1.0

    @property
    def needs_exact_logits(self) -> bool:
        """Whether a term reads the teacher's logits in full (``Loss.needs_exact_logits``): no view cache then."""
        return any(t.loss.needs_exact_logits and t.teacher == LOGITS and t.weight != 0 for t in self.terms)

    @property
    def uses_teacher(self) -> bool:
        return bool(self.teacher_taps)

    @property
    def student_taps(self) -> set[str]:
        return {t.student for t in self.terms if t.weight != 0}

    @property
    def teacher_taps(self) -> set[str]:
        return {t.teacher for t in self.terms if t.weight != 0 and t.loss.uses_teacher}

    def forward(
        self,
        student: Mapping[str, torch.Tensor],
        teacher: Mapping[str, torch.Tensor] | None,
        target: torch.Tensor | None,
        *,
        index: torch.Tensor | None = None,
        progress: float = 0.0,
        positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The weighted value of every active term, by name; their sum is the loss to minimise.

        Per-token logits (a tagger's ``(B, L, C)``, with a tag per token or none) are compared token by
        token: the positions ``positions`` marks (bool ``(B, L)``; :func:`~distil.data.tokens.token_positions`:
        the tagged tokens, or every real token of unlabeled text) become the rows of ``(P, C)`` logits,
        so every logit loss (CE, KD, DKD, ...) reads a token as it reads a sample; a label term keeps
        the rows that have a tag. The rows are the same for the student and the teacher.
        """
        values = {}
        # Loss maths in fp32 even under a bf16 autocast (engine/precision.py): inputs upcast, autocast off.
        with full_precision(next(iter(student.values())).device):
            for name, term in zip(self.names, self.terms):
                weight = term.weight_at(progress)
                if weight == 0:
                    continue
                s = _fp32(student[term.student])
                if name in self.connectors:
                    s = self.connectors[name](s)
                t = _fp32(teacher[term.teacher]) if term.loss.uses_teacher and teacher is not None else None
                y = target
                if term.student == LOGITS and s.dim() == 3 and positions is not None:
                    s, t, y = per_token_rows(s, t, target, positions, labelled=term.loss.uses_target)
                elif name in self.token_terms and positions is not None and t is not None:
                    keep = positions[:, : s.shape[1]]  # hidden states of real (tagged) tokens, never padding
                    s, t = s[keep], t[keep]
                extra = {"index": index} if term.loss.uses_index else {}
                values[name] = weight * term.loss(s, t, target=y, **extra)
        return values


def per_token_rows(
    student: torch.Tensor, teacher: torch.Tensor | None, target: torch.Tensor | None, positions: torch.Tensor, *, labelled: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-token logits ``(B, L, C)`` (and per-token labels ``(B, L)``) as rows ``(P, C)`` / ``(P,)`` at ``positions``.

    ``labelled``: a label term, which reads only the rows that carry a tag (label ≥ 0).
    """
    if target is not None and target.dim() != 2:
        raise ValueError(
            f"the model returns per-token logits {tuple(student.shape)} but the labels are one per text {tuple(target.shape)}; "
            "a tagger needs tagging data (task: tag), a sentence classifier returns (batch, classes)"
        )
    keep = positions[:, : student.shape[1]]
    if labelled and target is not None:
        keep = keep & (target >= 0)
    return student[keep], None if teacher is None else teacher[keep], None if target is None else target[keep]


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 activations as fp32 (differentiably); fp32 tensors are returned as they are."""
    return x.float() if x.is_floating_point() else x


def _term_name(term: Term) -> str:
    tap = term.student if term.student == term.teacher or not term.loss.uses_teacher else f"{term.student}>{term.teacher}"
    return term.name if tap == LOGITS else f"{term.name}@{tap}"


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def connect(
    terms: list[Term],
    student_shapes: Mapping[str, torch.Size],
    teacher_shapes: Mapping[str, torch.Size],
    axes: tuple[Mapping[str, tuple[int, ...]], Mapping[str, tuple[int, ...]]] | None = None,
) -> Objective:
    """The objective of ``terms``, with a connector for every term whose loss needs equal shapes and lacks them.

    ``axes`` (text: the student's and the teacher's length axes per tap, see
    :func:`~distil.engine.taps.length_axes`) chooses connectors that work at every batch length, and
    marks the terms whose features are per token on both sides (``(B, L, ...)``): they compare the
    tokens at ``positions`` only, so padding never counts.
    """
    objective = Objective(terms)
    if axes is not None:
        objective.token_terms = {
            name
            for name, term in zip(objective.names, terms)
            if term.student != LOGITS and term.loss.uses_teacher and axes[0].get(term.student) == (1,) and axes[1].get(term.teacher) == (1,)
        }
    for name, term in zip(objective.names, terms):
        if term.loss.needs_same_shape and term.loss.uses_teacher:
            s, t = student_shapes[term.student], teacher_shapes[term.teacher]
            try:
                if axes is not None:
                    connector = build_token_connector(s, t, axes[0][term.student], axes[1][term.teacher])
                    if not isinstance(connector, nn.Identity):
                        objective.connectors[name] = connector
                elif s[1:] != t[1:]:
                    objective.connectors[name] = build_connector(s, t)
            except ValueError as err:
                raise ValueError(f"term {name}: {err}") from None
    return objective


def task_objective(label_smoothing: float = 0.0) -> Objective:
    """Training on the labels alone: the teacher's own training and the scratch baseline."""
    return Objective([CE(label_smoothing) * 1.0])


@dataclass(frozen=True)
class TermSpec:
    """A term as data: loss name, weight, taps on each side, loss arguments, optional schedule."""

    loss: str
    weight: float = 1.0
    student: str = LOGITS
    teacher: str | None = None  # None: the same tap name as the student's
    params: Mapping[str, Any] = field(default_factory=dict)
    schedule: Mapping[str, float] | None = None  # e.g. {"warmup": 0.1}, {"until": 0.2}, {"after": 0.2}


def build_objective(
    terms: Sequence[TermSpec | Term],
    student: nn.Module,
    teacher: nn.Module | None,
    probe_x: torch.Tensor,
    *,
    n_data: int,
    seed: int,
    teacher_probe_x: torch.Tensor | None = None,
) -> Objective:
    """The objective a run trains with: taps resolved, shapes probed, losses and connectors built.

    ``terms`` are specs (losses built by name, with the arguments that come from the models or the
    data — ``s_dim``, ``t_dim``, ``channels``, ``n_data`` — filled in where the spec leaves them out)
    or ready-made terms (their losses used as they are), in any mix. A tap group (``stages``, ...)
    expands to one term per stage pair, paired from the last stage backwards. Torch's global RNG is
    seeded with ``seed`` first, so the loss parameters and connectors of one config and seed are the
    same whoever builds the objective (run, strategy, Python API, compress). On token batches the
    connectors must work at every batch length: each model is probed once more, a token shorter, to
    find which axis of each feature is the length (:func:`~distil.engine.connectors.build_token_connector`).

    Paired data: ``teacher_probe_x`` are the teacher's inputs of the same samples (another shape); the
    teacher is probed on them, the student on ``probe_x`` (default: both on ``probe_x``).

    Raises ``KeyError`` (unknown loss, schedule or tap, with what exists) or ``ValueError`` (arguments,
    shapes no connector can bridge), each naming the term.
    """
    torch.manual_seed(seed)
    teacher_x = probe_x if teacher_probe_x is None else teacher_probe_x
    expanded: list[tuple[int, TermSpec | Term, str, str, int]] = []
    for i, item in enumerate(terms):
        uses_teacher = _loss_class(i, item).uses_teacher
        try:
            pairs = _pairs(item.student, item.teacher, uses_teacher, student, teacher, probe_x, teacher_x)
        except KeyError as err:
            raise KeyError(f"term {i} ({_loss_name(item)}): {err.args[0]}") from None
        expanded += [(i, item, s, t, len(pairs)) for s, t in pairs]
    s_taps = {s for _, _, s, _, _ in expanded}
    s_shapes = probe_shapes(student, probe_x, s_taps)
    wanted = {t for _, item, _, t, _ in expanded if _loss_class(0, item).uses_teacher}
    t_shapes = probe_shapes(teacher, teacher_x, wanted) if teacher is not None else {}
    built = [_term(i, item, s, t, copies, s_shapes, t_shapes, n_data) for i, item, s, t, copies in expanded]
    axes = None
    if is_tokens(probe_x) and teacher is not None and any(t.loss.uses_teacher and t.student != LOGITS for t in built):
        # Text: which axis of each feature is the length, which changes from batch to batch.
        axes = (length_axes(student, probe_x, s_taps), length_axes(teacher, teacher_x, wanted))
    return connect(built, s_shapes, t_shapes, axes)


def _loss_name(item: TermSpec | Term) -> str:
    return item.loss if isinstance(item, TermSpec) else item.name


def _loss_class(i: int, item: TermSpec | Term) -> type:
    if isinstance(item, Term):
        return type(item.loss)
    if item.loss not in LOSSES:
        raise KeyError(f"term {i} ({item.loss}): unknown loss; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[item.loss]


def _pairs(
    student_tap: str, teacher_tap: str | None, uses_teacher: bool, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor, teacher_x: torch.Tensor
) -> list[tuple[str, str]]:
    """Concrete (student tap, teacher tap) pairs; groups pair stage by stage, from the last backwards."""
    s_taps = resolve_taps(student, x, student_tap)
    if not uses_teacher or teacher is None:
        return [(s, LOGITS) for s in s_taps]
    t_taps = resolve_taps(teacher, teacher_x, teacher_tap or student_tap)
    k = min(len(s_taps), len(t_taps))
    return list(zip(s_taps[len(s_taps) - k :], t_taps[len(t_taps) - k :]))


def _term(
    i: int, item: TermSpec | Term, s: str, t: str, copies: int, s_shapes: Mapping[str, torch.Size], t_shapes: Mapping[str, torch.Size], n_data: int
) -> Term:
    """One concrete term: a spec's loss built for its shapes, or a ready term moved onto the resolved taps."""
    if isinstance(item, Term):
        # A group expands to one term per stage; each gets its own copy of a loss that has state (VID).
        return replace(item, student=s, teacher=t, loss=item.loss if copies == 1 else copy.deepcopy(item.loss))
    params = _inferred(item.loss, item.params, s_shapes[s], t_shapes.get(t), n_data)
    try:
        loss = build_loss(item.loss, **params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"term {i} ({item.loss}): {err}") from None
    term = Term(loss, float(item.weight), s, t)
    if item.schedule:
        (kind, fraction), *more = item.schedule.items()
        if more or kind not in SCHEDULES:
            raise KeyError(f"term {i} ({item.loss}): schedule must be one of {{{', '.join(f'{k}: FRACTION' for k in SCHEDULES)}}}, got {dict(item.schedule)}")
        term = term.scheduled(SCHEDULES[kind](fraction))
    return term


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
