"""``distil bench methods``: one teacher/student pair, every method × seed, mean ± std, gap closed.

Each seed is one ordinary run directory (``DIR/seed{k}``: teacher, scratch student, one student per
method, all starting from the same initial weights and batch order). The teacher is trained once (or
loaded) and reused for the other seeds. Results: ``DIR/results.csv`` and ``DIR/results.md``.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from distil.config import ExperimentConfig
from distil.experiment import run_experiment
from distil.hardware import machine
from distil.weights import atomic_write


def bench_methods(config: ExperimentConfig, methods: Sequence[str], seeds: Sequence[int], out: str | Path, command: str, console: Console | None = None) -> list[dict[str, Any]]:
    """Run every method for every seed; returns the aggregated rows also written to results.csv/.md."""
    out = Path(out)
    if config.teacher is None:
        from distil.errors import ConfigError

        raise ConfigError("bench methods measures the gap to a teacher; the config has none (use `distil run` for teacher-free strategies)")
    summaries = []
    for k, seed in enumerate(seeds):
        cfg = config.model_copy(update={"seed": seed, "scratch": True, "compress": None})  # compares methods; compress is not part of it
        if k > 0 and not config.teacher.weights:  # train the teacher once, then load it
            cfg = cfg.model_copy(update={"teacher": cfg.teacher.model_copy(update={"weights": str(out / f"seed{seeds[0]}" / "teacher.safetensors")})})
        summaries.append(run_experiment(cfg, out / f"seed{seed}", console=console, methods=list(methods)))
    rows = aggregate(summaries)
    _write(out, rows, summaries, config, command)
    return rows


def aggregate(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: mean ± std test accuracy over seeds, gap closed, seconds per epoch."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for summary in summaries:
        for m in summary["models"]:
            # Strategies add rows with other roles (ensemble members, assistants, ...): only students are methods.
            if m["role"] == "student" or m["name"] == "teacher":
                by_method.setdefault(m["method"] if m["role"] == "student" else "teacher", []).append(m)
    teacher = statistics.mean(m["accuracy"] for m in by_method.pop("teacher"))
    scratch = statistics.mean(m["accuracy"] for m in by_method["scratch"])
    rows = []
    for method, runs in by_method.items():
        accs = [m["accuracy"] for m in runs]
        mean = statistics.mean(accs)
        rows.append(
            {
                "method": method,
                "seeds": len(accs),
                "accuracy_mean": mean,
                "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "gap_closed": (mean - scratch) / (teacher - scratch) if teacher != scratch else float("nan"),
                "seconds_per_epoch": statistics.mean(m["train_seconds"] / max(m["epochs"], 1) for m in runs),
                "teacher_accuracy": teacher,
            }
        )
    return rows


def _write(out: Path, rows: list[dict[str, Any]], summaries: Sequence[dict[str, Any]], config: ExperimentConfig, command: str) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "results.csv", lambda tmp: tmp.write_text(buffer.getvalue()))
    first = summaries[0]
    teacher = next(m for m in first["models"] if m["role"] == "teacher")
    student = next(m for m in first["models"] if m["role"] == "student")
    lines = [
        f"# Methods on {first['dataset']}: {teacher['arch']} teacher ({teacher['params']:,} params) → {student['arch']} student ({student['params']:,} params)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}",
        "",
        f"Teacher test accuracy {100 * rows[0]['teacher_accuracy']:.2f} %; student {config.student.epochs} epochs, seeds {[s['seed'] for s in summaries]}.",
        "Gap closed = (method − scratch) / (teacher − scratch), on the mean test accuracies.",
        "",
        "| method | test accuracy (mean ± std) | gap closed | s / epoch |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % | {100 * r['gap_closed']:+.0f} % | {r['seconds_per_epoch']:.1f} |")
    text = "\n".join(lines) + "\n"
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(text))
