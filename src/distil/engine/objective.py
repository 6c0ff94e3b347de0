"""An objective is a weighted sum of terms; a method is nothing more than its list of terms.

Each term reads one tensor of the student's outputs and (for teacher terms) one of the teacher's —
``"logits"`` or a tapped layer — passes the student side through a connector where the loss needs
equal shapes, and is weighted by ``weight × schedule(progress)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from distil.engine.connectors import build_connector
from distil.engine.precision import full_precision
from distil.engine.taps import LOGITS
from distil.losses import CE, Term


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
        self.connectors = nn.ModuleDict(connectors or {})

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
    ) -> dict[str, torch.Tensor]:
        """The weighted value of every active term, by name; their sum is the loss to minimise."""
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
                extra = {"index": index} if term.loss.uses_index else {}
                values[name] = weight * term.loss(s, t, target=target, **extra)
        return values


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


def connect(terms: list[Term], student_shapes: Mapping[str, torch.Size], teacher_shapes: Mapping[str, torch.Size]) -> Objective:
    """The objective of ``terms``, with a connector for every term whose loss needs equal shapes and lacks them."""
    objective = Objective(terms)
    for name, term in zip(objective.names, terms):
        if term.loss.needs_same_shape and term.loss.uses_teacher:
            s, t = student_shapes[term.student], teacher_shapes[term.teacher]
            if s[1:] != t[1:]:
                try:
                    objective.connectors[name] = build_connector(s, t)
                except ValueError as err:
                    raise ValueError(f"term {name}: {err}") from None
    return objective


def task_objective(label_smoothing: float = 0.0) -> Objective:
    """Training on the labels alone: the teacher's own training and the scratch baseline."""
    return Objective([CE(label_smoothing) * 1.0])
