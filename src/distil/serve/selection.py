"""Which row of a run's summary is served, by a stated rule, and the numbers the server reports for it.

A finished run (and ``distil compress`` after it) lists many students in ``summary.json``: the
distilled student, its ONNX export, pruned, low-rank and int8 variants. The server serves one, and
says which, by which rule, with that row's own numbers — never another row's.

**The rule** (:data:`RULE`): among the student rows the server can run — an ``.onnx`` file, or a
run's own ``.safetensors`` student (rebuilt from ``config.yaml``) — take the fastest at batch 1
(``latency_ms_b1``, as the row measured it) whose test accuracy is within ``tolerance`` (0.5 point)
of the best student row's; ONNX rows first, since the server runs ONNX Runtime by default, and
only rows that claim their speed (a compress row whose ``speedup.claimed`` is false — ONNX int8 on
a CPU without VNNI, measured slower at batch 256 — is kept for its size, not chosen for speed). With
``--model ROW`` the named row is served whatever its speed. Scratch students count only when the
run has no other. PyTorch-only compressed rows (pruned, torch-int8 ``.safetensors`` under
``compressed/``) are not servable: their modules are rebuilt by compress, not from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distil.errors import ModelError

#: The default tolerance, in accuracy (a fraction): 0.005 = half a point.
TOLERANCE = 0.005
RULE = "the fastest servable student row at batch 1 (ONNX rows first; rows that claim their speed-up) within {points} point of the best student row's test accuracy"
#: The facts of a row that the model card and /v2/models/{name} report.
CARD_KEYS = ("method", "arch", "runtime", "accuracy", "params", "nonzeros", "size_bytes", "latency_ms_b1", "latency_ms_b256", "throughput_b256")


@dataclass(frozen=True)
class Selection:
    """The row chosen, why, and the best student it was compared with."""

    row: dict[str, Any]
    reason: str
    best: dict[str, Any] | None = None

    def card(self) -> dict[str, Any]:
        """The served row's own numbers, its name, the rule that chose it and the best row's accuracy."""
        card = {"row": self.row["name"], **{k: self.row[k] for k in CARD_KEYS if k in self.row}, "selected_by": self.reason}
        if self.best is not None and self.best["name"] != self.row["name"]:
            card["best_student"] = {"row": self.best["name"], "accuracy": self.best.get("accuracy")}
        return card


def servable(run: Path, row: dict[str, Any], runtime: str) -> bool:
    """Whether the server can run ``row``: its ONNX file (with ONNX Runtime), or a run's own safetensors student."""
    weights = str(row.get("weights", ""))
    if weights.endswith(".onnx"):
        return runtime == "onnxruntime" and (run / weights).is_file()
    return weights.endswith(".safetensors") and "/" not in weights and (run / weights).is_file()


def student_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The student rows; scratch students only when there is no other."""
    students = [m for m in models if m.get("role") == "student"]
    return [m for m in students if m.get("method") != "scratch"] or students


def choose_row(run: Path, models: list[dict[str, Any]], runtime: str = "onnxruntime", wanted: str | None = None, tolerance: float = TOLERANCE) -> Selection:
    """The student row to serve from the summary's ``models`` (see the module doc for the rule)."""
    students = student_rows(models)
    if not students:
        raise ModelError(f"{run}/summary.json lists no student model")
    usable = [m for m in students if servable(run, m, runtime)]
    if wanted is not None:
        named = {m["name"]: m for m in models}
        if wanted not in named or named[wanted] not in usable:
            choices = ", ".join(m["name"] for m in usable) or "none"
            why = "is not a row of the summary" if wanted not in named else f"cannot be served with {runtime} (weights {named[wanted].get('weights')})"
            raise ModelError(f"--model {wanted!r} {why}; servable student rows: {choices}")
        return Selection(named[wanted], f"--model {wanted}")
    if not usable:
        raise ModelError(f"{run}/summary.json lists no student the server can run (an .onnx file or the run's own .safetensors)")
    measured = [m for m in students if isinstance(m.get("accuracy"), (int, float))]
    best = max(measured, key=lambda m: m["accuracy"]) if measured else None
    close = [m for m in usable if best is None or m.get("accuracy", -1.0) >= best["accuracy"] - tolerance - 1e-12]
    pool = [m for m in close if str(m["weights"]).endswith(".onnx")] or close or usable
    pool = [m for m in pool if (m.get("speedup") or {}).get("claimed", True)] or pool
    row = min(pool, key=lambda m: (m.get("latency_ms_b1", float("inf")), -m.get("accuracy", 0.0)))
    return Selection(row, RULE.format(points=f"{100 * tolerance:g}"), best)
