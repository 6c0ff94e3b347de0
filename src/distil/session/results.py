"""One row of a run's results table — the schema of ``summary.json``'s ``models``, written in one place.

A run's own models (teacher, students, a strategy's members) and the rows ``distil compress`` adds
(``source`` names the model they were made from) share it. Every row is measured the same way
(:func:`distil.engine.measure.measure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distil.engine.trainer import FitResult


@dataclass
class ModelResult:
    """A model in the table: what it is, how it measured, where its weights are and how it was trained."""

    name: str
    role: str  # teacher, student, assistant, ensemble, specialist, transfer
    method: str  # loaded, trained, scratch, kd, pruned, onnx, ...
    arch: str
    seed: int
    weights: str  # file name in the run directory
    sha256: str
    #: runtime, accuracy (and a run's own models' val_accuracy), params, nonzeros, size_bytes, latency
    #: p50/p95 at batch 1 and 256, throughput at 256
    measured: dict[str, Any]
    fit: FitResult | None = None  # None: loaded, combined or compressed without training
    train_seconds: float | None = None  # default: the fit's
    source: str | None = None  # compressed rows: the model they were made from
    #: what else the row says: ``teacher_outputs`` of a distilled student, a compress step's settings and parity
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "role": self.role, "method": self.method, "arch": self.arch}
        if self.source is not None:
            row["source"] = self.source
        row.update(self.measured)
        row["seed"] = self.seed
        if self.source is None:  # a run's own model: how its training went
            row["best_epoch"] = self.fit.best_epoch if self.fit else 0
            row["epochs"] = len(self.fit.history) if self.fit else 0
        seconds = self.train_seconds if self.train_seconds is not None else (self.fit.train_seconds if self.fit else 0.0)
        row["train_seconds"] = round(seconds, 2)
        row["weights"], row["sha256"] = self.weights, self.sha256
        row.update(self.details)
        return row
