"""The table and report page of a language-model run (``summary.json`` with ``kind: lm``).

Table: one row per model — perplexity on the validation and held-out books, mean per-token
KL(teacher ‖ student) on the held-out books, the share of the log-perplexity gap between the data-only
student and the teacher that a method recovers, parameters, generation speed (greedy at each batch
size, sampling at batch 1) and its ratio to the teacher's at batch 1. The page adds the continuations
of the fixed prompts side by side, teacher first.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.table import Table

from distil.weights import atomic_write

REPORT = "report.html"


def is_lm_summary(summary: dict[str, Any]) -> bool:
    return summary.get("kind") == "lm"


def _speed_keys(summary: dict[str, Any]) -> list[str]:
    return list(summary["models"][0]["tokens_per_s"]) if summary["models"] else []


def lm_columns(summary: dict[str, Any]) -> list[str]:
    speeds = [f"tok/s {k.replace('_', ' ')}" for k in _speed_keys(summary)]
    return ["model", "method", "params", "val ppl", "test ppl", "KL(t‖s)/token", "gap recovered", *speeds, "speed-up b1", "train s"]


def lm_rows(summary: dict[str, Any]) -> list[list[str]]:
    keys = _speed_keys(summary)
    out = []
    for m in summary["models"]:
        gap = m.get("gap_recovered")
        out.append(
            [
                m["name"],
                m["method"],
                f"{m['params']:,}",
                f"{m['val_ppl']:.2f}",
                f"{m['test_ppl']:.2f}",
                f"{m['kl_to_teacher']:.4f}",
                "–" if gap is None else f"{100 * gap:.1f} %",
                *[f"{m['tokens_per_s'][k]:,.0f}" for k in keys],
                f"{m.get('speedup_b1', 1.0):.2f}×",
                f"{m['train']['train_s']:.0f}" if "train" in m else "–",
            ]
        )
    return out


def lm_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"{summary['name']}: held-out books {', '.join(summary['data']['source_books']['test'])}")
    for name in lm_columns(summary):
        table.add_column(name, justify="left" if name in ("model", "method") else "right")
    for row in lm_rows(summary):
        table.add_row(*row)
    return table


def lm_markdown(summary: dict[str, Any]) -> str:
    """The table as Markdown (benchmark results)."""
    cols = lm_columns(summary)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in lm_rows(summary)]
    return "\n".join(lines)


def write_lm_report(run_dir: str | Path, summary: dict[str, Any]) -> Path:
    """DIR/report.html: the table and the prompts' continuations, teacher and students side by side."""
    esc = html.escape
    cols = lm_columns(summary)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in lm_rows(summary))
    models = summary["models"]
    samples = "".join(
        f"<tr><th>{esc(prompt)}</th>" + "".join(f"<td>{esc(m['samples'][i])}</td>" for m in models) + "</tr>"
        for i, prompt in enumerate(summary.get("prompts", []))
    )
    names = "".join(f"<th>{esc(m['name'])}</th>" for m in models)
    data = summary["data"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(summary['name'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
td{{text-align:right}}.samples td{{text-align:left;white-space:pre-wrap;max-width:24em}}</style></head><body>
<h1>{esc(summary['name'])}</h1>
<p>Tokenizer {esc(data['tokenizer'])} ({data['vocab_size']} tokens), context {data['context_length']};
held-out books {esc(', '.join(data['source_books']['test']))} ({data['tokens']['test']:,} tokens); validation {esc(', '.join(data['source_books']['val']))}.
Gap recovered: (log ppl of the data-only student − log ppl of the method) / (log ppl of the data-only student − log ppl of the teacher), on the held-out books.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Continuations of fixed prompts</h2>
<table class="samples"><tr><th>prompt</th>{names}</tr>{samples}</table>
</body></html>
"""
    path = Path(run_dir) / REPORT
    atomic_write(path, lambda tmp: tmp.write_text(page))
    return path
