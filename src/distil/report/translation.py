"""A translation run's table and page: BLEU / chrF greedy and beam, parameters, size, latency per sentence,
target tokens/s; example test sentences with every model's translation side by side."""

from __future__ import annotations

import html
from typing import Any

from rich.table import Table
from rich.text import Text

COLUMNS = ["model", "method", "arch", "BLEU greedy", "BLEU beam", "chrF greedy", "chrF beam", "params", "size", "ms/sent greedy", "ms/sent beam", "tok/s greedy", "train s"]
LEFT = {"model", "method", "arch"}


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def columns(summary: dict[str, Any]) -> list[str]:
    beam = next((m.get("beam") for m in summary["models"]), 5)
    return [c.replace("beam", f"beam {beam}") if c.endswith("beam") else c for c in COLUMNS]


def rows(summary: dict[str, Any]) -> list[list[str]]:
    return [
        [
            m["name"], m["method"], m["arch"],
            f"{m['bleu']:.2f}", f"{m['bleu_beam']:.2f}", f"{m['chrf']:.2f}", f"{m['chrf_beam']:.2f}",
            f"{m['params']:,}", _bytes(m["size_bytes"]),
            f"{m['latency_ms_greedy']:.2f}", f"{m['latency_ms_beam']:.2f}", f"{m['tokens_per_s']:,.0f}", f"{m.get('train_seconds', 0):.0f}",
        ]
        for m in summary["models"]
    ]


def translation_table(summary: dict[str, Any]) -> Table:
    data = summary.get("data", {})
    caption = f"test: {data.get('sizes', {}).get('test', '?')} pairs; BLEU/chrF: sacrebleu on detokenized text; ms/sent: median of sentences translated alone (batch 1)"
    table = Table(title=f"{summary.get('name', '')} — {summary['dataset']} (test split)", caption=caption)
    for col in columns(summary):
        table.add_column(col, justify="left" if col in LEFT else "right")
    for row in rows(summary):
        table.add_row(*map(Text, row))
    return table


def examples_html(summary: dict[str, Any]) -> str:
    """Each example sentence: source, reference, and every model's translation."""
    parts = []
    for ex in summary.get("examples", []):
        lines = [f"<tr><th class=\"l\">source ({html.escape(ex['ref'])})</th><td class=\"l\">{html.escape(ex['source'])}</td></tr>",
                 f"<tr><th class=\"l\">reference</th><td class=\"l\">{html.escape(ex['reference'])}</td></tr>"]
        lines += [f"<tr><th class=\"l\">{html.escape(name)}</th><td class=\"l\">{html.escape(text)}</td></tr>" for name, text in ex["translations"].items()]
        parts.append(f"<table class=\"ex\">{''.join(lines)}</table>")
    return "<h2>Example translations (test split)</h2>" + "<br>".join(parts) if parts else ""


def render_translation_report(summary: dict[str, Any], style: str, table_html) -> str:  # table_html: (header, body, left) -> str
    title = f"{summary.get('name', '')} — {summary['dataset']}"
    machine = summary.get("machine", {})
    meta = (
        f"finished {summary.get('finished', '?')} · {summary.get('wall_seconds', '?')} s · device {summary.get('device', '?')} · "
        f"torch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} threads · <code>{html.escape(summary.get('command', ''))}</code>"
    )
    body = "\n".join([
        f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{meta}</p>',
        "<h2>Models (test split)</h2>" + table_html(columns(summary), rows(summary), LEFT),
        '<p class="meta">BLEU and chrF: sacrebleu (default settings) on detokenized text; ms/sent: median latency of one sentence translated alone.</p>',
        examples_html(summary),
    ])
    css = style + " table.ex td { white-space: normal; } table.ex { margin-bottom: 1em; }"
    return f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{css}</style></head>\n<body>\n{body}\n</body></html>\n'
