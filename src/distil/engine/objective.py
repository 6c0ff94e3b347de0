"""An objective is a weighted sum of terms; a method is nothing more than its list of terms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from distil.losses import CE, KD, Term


class Objective(nn.Module):
    """``loss = Σ_k weight_k · loss_k(student[s_k], teacher[t_k])``, every term reported by name."""

    def __init__(self, terms: Iterable[Term]) -> None:
        super().__init__()
        self.terms = list(terms)
        if not self.terms:
            raise ValueError("an objective needs at least one term")
        self.names = _unique_names(t.name for t in self.terms)
        # Registered so that losses with parameters (later: connectors, CRD heads) train and move with it.
        self.losses = nn.ModuleList(t.loss for t in self.terms)

    @property
    def uses_teacher(self) -> bool:
        return any(t.loss.uses_teacher and t.weight != 0 for t in self.terms)

    def forward(
        self,
        student: Mapping[str, torch.Tensor],
        teacher: Mapping[str, torch.Tensor] | None,
        target: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The weighted value of every term, by name; their sum is the loss to minimise."""
        values = {}
        for name, term in zip(self.names, self.terms):
            if term.weight == 0:
                continue
            t_input = teacher[term.teacher] if term.loss.uses_teacher and teacher is not None else None
            values[name] = term.weight * term.loss(student[term.student], t_input, target=target)
        return values


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}{seen[n]}")
    return out


def task_objective(label_smoothing: float = 0.0) -> Objective:
    """Training on the labels alone: the teacher's own training and the scratch baseline."""
    return Objective([CE(label_smoothing) * 1.0])


def hinton_objective(temperature: float, alpha: float, label_smoothing: float = 0.0) -> Objective:
    """Hinton et al. 2015: ``α · T² KL(p_t ‖ p_s) + (1 − α) · CE``."""
    return Objective([KD(T=temperature) * alpha, CE(label_smoothing) * (1.0 - alpha)])
