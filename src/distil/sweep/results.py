"""A sweep's results: one row per trial, the best trial's config, and a summary written last.

``results.md`` and ``results.csv`` (the table), ``best.yaml`` (the base config with the best trial's
values, runnable with ``distil run``) and ``results.json`` are rewritten atomically after every trial,
``results.json`` last, so an interrupted sweep still shows what it has done.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from distil.config import SweepConfig, map_paths, resolve_paths, set_path, validate_config
from distil.hardware import machine
from distil.weights import atomic_write

RESULTS = "results.json"


def label(path: str) -> str:
    """A short column name: ``distill.terms.KD.params.T`` → ``KD.T``."""
    return path.removeprefix("distill.terms.").replace(".params.", ".")


def trial_rows(study: Any, space: SweepConfig) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    requeued = {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}
    rows = []
    for t in trials:
        state = {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running", TrialState.WAITING: "queued"}.get(t.state)
        if state is None:
            state = "diverged" if "error" in t.user_attrs else "interrupted" if t.number in requeued else "failed"
        rows.append(
            {
                "trial": t.number,
                "state": state,
                "params": t.user_attrs.get("values", t.params),
                space.metric: t.value if t.state == TrialState.COMPLETE else None,
                "test_accuracy": t.user_attrs.get("test_accuracy"),
                "seconds": t.user_attrs.get("seconds"),
                "dir": t.user_attrs.get("dir"),
                "overrides": t.user_attrs.get("overrides", []),
                **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
                **({"requeued_from": t.user_attrs["requeued_from"]} if "requeued_from" in t.user_attrs else {}),
            }
        )
    return rows


def best_row(rows: list[dict[str, Any]], space: SweepConfig) -> dict[str, Any] | None:
    """The complete trial with the best metric; ties go to the earlier trial."""
    done = [r for r in rows if r["state"] == "complete"]
    if not done:
        return None
    sign = 1 if space.goal == "maximize" else -1
    return max(done, key=lambda r: (sign * r[space.metric], -r["trial"]))


def write_results(
    study: Any,
    space: SweepConfig,
    raw: dict[str, Any],
    model: str,
    *,
    final: bool,
    config_path: Path,
    overrides: list[str],
    out: Path,
    command: str | None,
    trials: int,
    started: float,
    reference: dict[str, Any] | None,
) -> dict[str, Any]:
    rows = trial_rows(study, space)
    best = best_row(rows, space)
    summary = {
        "config": str(config_path),
        "overrides": overrides,
        "command": command,
        "machine": machine(),
        "metric": space.metric,
        "model": model,
        "direction": space.goal,
        "sampler": space.sampler,
        "seed": space.seed,
        "trials": trials,
        "complete": final,
        "reference": {m["name"]: {"accuracy": m["accuracy"], "val_accuracy": m.get("val_accuracy")} for m in (reference or {}).get("models", [])},
        "best": best,
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text_md, text_csv = markdown(summary, space), _csv(rows, space)
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(text_md))
    atomic_write(out / "results.csv", lambda tmp: tmp.write_text(text_csv))
    if best is not None:
        text = best_config(raw, best, out, config_path, space)
        atomic_write(out / "best.yaml", lambda tmp: tmp.write_text(text))
    text_json = json.dumps(summary, indent=2) + "\n"
    atomic_write(out / RESULTS, lambda tmp: tmp.write_text(text_json))
    return summary


def best_config(raw: dict[str, Any], best: dict[str, Any], out: Path, config_path: Path, space: SweepConfig) -> str:
    """The sweep's config as the user wrote it, with the best trial's values (and the shared teacher),
    without the sweep section; paths relative to DIR, so ``distil run DIR/best.yaml`` runs it."""
    raw = copy.deepcopy(raw)
    raw.pop("sweep", None)
    teacher = {k: v for item in best["overrides"] for k, _, v in [item.partition("=")] if k.startswith("teacher.")}
    for path, value in {**best["params"], **{k: json.loads(v) for k, v in teacher.items()}}.items():
        set_path(raw, path, value)
    config = resolve_paths(validate_config(raw, source="best config"), config_path.parent)
    root = out.resolve()
    relative = map_paths(config, lambda p: os.path.relpath(p, root) if p else p)
    # only what the user's file sets (and the sweep changed): defaults stay defaults, as in their file
    body = yaml.safe_dump(relative.model_dump(mode="json", exclude_unset=True, include=set(raw)), sort_keys=False)
    head = (
        f"# The best trial ({best['trial']}, {best['dir']}) of the sweep in this directory: {space.metric} {best[space.metric]:.4f}"
        f" of {space.model or 'the distilled student'}, test accuracy {best['test_accuracy']:.4f}.\n"
        f"# Base config {config_path} with {', '.join(f'{k}={v}' for k, v in best['params'].items())}.\n"
        f"# distil run {out / 'best.yaml'} --out runs/best\n"
    )
    return head + body


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _columns(space: SweepConfig) -> list[str]:
    return ["trial", "state", *map(label, space.params), space.metric, "test acc", "seconds"]


def _cells(row: dict[str, Any], space: SweepConfig, best: dict[str, Any] | None) -> list[str]:
    metric = row[space.metric]
    return [
        f"{row['trial']}{' (best)' if best is not None and row['trial'] == best['trial'] else ''}",
        row["state"],
        *(_fmt(row["params"].get(p)) for p in space.params),
        "" if metric is None else (f"{100 * metric:.2f} %" if space.metric.endswith("accuracy") else _fmt(metric)),
        "" if row["test_accuracy"] is None else f"{100 * row['test_accuracy']:.2f} %",
        "" if row["seconds"] is None else f"{row['seconds']:.1f}",
    ]


def markdown(summary: dict[str, Any], space: SweepConfig) -> str:
    lines = [f"# Sweep of {summary['config']}", ""]
    if summary["command"]:
        lines += [f"Command: `{summary['command']}`", ""]
    lines += [f"Machine: {summary['machine']}", ""]
    lines += [f"Chosen on {space.metric} ({summary['direction']}) of {summary['model']}, on the validation split; the test accuracy is reported, never used to choose.", ""]
    lines += [f"Sampler {summary['sampler']} (seed {summary['seed']}); {summary['trials']} trials{'' if summary['complete'] else ' asked, not all done yet'}.", ""]
    reference = summary["reference"]
    if reference:
        lines += ["Reference run (shared teacher, base config's scratch student): " + ", ".join(f"{k} test {100 * v['accuracy']:.2f} %" for k, v in reference.items()), ""]
    cols = _columns(space)
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if c not in ("state",) else "---" for c in cols) + "|"]
    for row in summary["rows"]:
        lines.append("| " + " | ".join(_cells(row, space, summary["best"])) + " |")
    if summary["best"]:
        lines += ["", f"Best: trial {summary['best']['trial']} → best.yaml"]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, Any]], space: SweepConfig) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", *space.params, space.metric, "test_accuracy", "seconds", "dir"])
    for r in rows:
        writer.writerow([r["trial"], r["state"], *(r["params"].get(p, "") for p in space.params), r[space.metric] if r[space.metric] is not None else "", r["test_accuracy"] or "", r["seconds"] or "", r["dir"] or ""])
    return buffer.getvalue()


def results_table(summary: dict[str, Any], space: SweepConfig, title: str) -> Table:
    table = Table(title=title)
    for col in _columns(space):
        table.add_column(col, justify="left" if col == "state" else "right")
    for row in summary["rows"]:
        table.add_row(*_cells(row, space, summary["best"]))
    return table
