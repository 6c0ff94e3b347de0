"""The side-by-side table every run ends with: teacher and students, accuracy, size, speed."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

COLUMNS = ["model", "method", "runtime", "arch", "test acc", "params", "non-zeros", "size", "latency b=1", "p95 b=1", "throughput b=256", "train s"]
LEFT = {"model", "method", "runtime", "arch"}
#: Text runs: the batch-1 latency of a typical sentence with its tokenization (tokenizer + model).
TEXT_COLUMN = "b=1 + tokenize"


#: Tagging runs: accuracy is over the tagged words of the test split.
TOKEN_ACCURACY = "token acc"
#: Runs that probe representations (self-supervised): linear-probe and k-NN test accuracy of the embedding.
PROBE_COLUMNS = ["probe acc", "k-NN acc"]


def columns(summary: dict[str, Any]) -> list[str]:
    """The table's columns: :data:`COLUMNS`, for text runs the latency with tokenization, and for
    tagging runs "token acc" (the share of test words tagged right) instead of "test acc"; when any
    model was probed, its linear-probe and k-NN accuracy after "test acc"."""
    names = list(COLUMNS)
    if summary.get("data", {}).get("text", {}).get("task") == "tag":
        names[names.index("test acc")] = TOKEN_ACCURACY
    if any("probe_accuracy" in m for m in summary["models"]):
        at = names.index("test acc") + 1
        names[at:at] = PROBE_COLUMNS
    if not any(m.get("latency_ms_b1_text") for m in summary["models"]):
        return names
    at = names.index("p95 b=1") + 1
    return [*names[:at], TEXT_COLUMN, *names[at:]]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _ms(value: float | None) -> str:
    return f"{value:.3f} ms" if value else "–"


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f} %" if value is not None else "–"


def rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row per model, in the order of :func:`columns`; fields older summaries lack (runtime,
    non-zeros, p95) read as torch / –."""
    names = columns(summary)
    text, probed = TEXT_COLUMN in names, PROBE_COLUMNS[0] in names
    return [
        [
            m["name"],
            m["method"],
            m.get("runtime", "torch"),
            m["arch"],
            f"{100 * m['accuracy']:.2f} %",
            *([_percent(m.get("probe_accuracy")), _percent(m.get("knn_accuracy"))] if probed else []),
            f"{m['params']:,}",
            f"{m['nonzeros']:,}" if m.get("nonzeros") else "–",
            human_bytes(m["size_bytes"]),
            _ms(m["latency_ms_b1"]),
            _ms(m.get("latency_ms_b1_p95")),
            *([_ms(m.get("latency_ms_b1_text"))] if text else []),
            f"{m['throughput_b256']:,.0f} /s",
            f"{m.get('train_seconds', 0):.0f}",
        ]
        for m in summary["models"]
    ]


def inputs_line(summary: dict[str, Any]) -> str | None:
    """Paired data: what each model sees, e.g. ``teacher: camera image 1×28×28; students: low-resolution sensor 1×7×7 (…)``; else None."""
    pair = summary.get("data", {}).get("paired")
    if not pair:
        return None
    teacher, student = pair["teacher"], pair["student"]
    derived = f" ({student['derived']})" if student.get("derived") else ""
    return f"inputs — teacher: {teacher['input']} {_shape(teacher['input_shape'])}; students: {student['input']} {_shape(student['input_shape'])}{derived}"


def _shape(shape: list[int]) -> str:
    return "×".join(map(str, shape))


def summary_table(summary: dict[str, Any]) -> Table:
    if summary.get("kind") == "translation":
        from distil.report.translation import translation_table

        return translation_table(summary)
    table = Table(title=f"{summary.get('name', '')} — {summary['dataset']} (test split)", caption=inputs_line(summary))
    for col in columns(summary):
        table.add_column(col, justify="left" if col in LEFT else "right")
    for row in rows(summary):
        table.add_row(*map(Text, row))  # plain text: a method such as "born_again[1]" or "semi_supervised[ema]" is not markup
    return table
