"""``DIR/report.html``: one self-contained page per run — the table, curves, Pareto views, confusion, calibration.

The table is :func:`distil.report.table.rows` (the terminal table's rows); curves come from ``metrics.jsonl``;
the Pareto views from ``summary.json`` (compressed rows included). Confusion matrices, agreement and
calibration need predictions, so the teacher and the main distilled student are rebuilt from
``config.yaml`` and their weights and run on the test split. Plots are PNGs embedded as base64, so the
file opens anywhere, offline, and can be mailed as one attachment.

The numbers are :mod:`distil.report.analysis`'s and the figures :mod:`distil.report.plots`'s; this module
lays out the page and writes it.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from distil.errors import ConfigError
from distil.report.analysis import (
    ECE_BINS,
    Predictions,
    agreement,
    disagreements,
    expected_calibration_error,
    most_frequent,
    per_class_scores,
    predictions,
    read_metrics,
)
from distil.report.plots import confusion_plot, curves_plot, pareto_plot, reliability_plot
from distil.report.table import LEFT, columns, inputs_line, rows
from distil.session import CONFIG, SUMMARY, read_summary
from distil.weights import atomic_write

REPORT = "report.html"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { padding: 0.3em 0.6em; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
img { max-width: 100%; } .meta { color: #666; font-size: 0.85em; } .err { color: #b00; }
"""


def _table(header: list[str], body: list[list[str]], left: set[str]) -> str:
    cls = ['class="l"' if c in left else "" for c in header]
    head = "".join(f"<th {c}>{html.escape(h)}</th>" for h, c in zip(header, cls))
    lines = ["<tr>" + "".join(f"<td {c}>{html.escape(v)}</td>" for v, c in zip(row, cls)) + "</tr>" for row in body]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _pct(v: float) -> str:
    return "–" if np.isnan(v) else f"{100 * v:.2f} %"


def _section(title: str, draw, *args) -> str:
    """A section whose drawing failed says so and the rest of the page still renders."""
    try:
        body = draw(*args)
    except Exception as err:  # noqa: BLE001 — one broken plot must not cost the page
        body = f'<p class="err">could not draw: {html.escape(f"{type(err).__name__}: {err}")}</p>'
    return f"<h2>{html.escape(title)}</h2>\n{body}"


#: Classes shown in the confusion matrices and the per-class table when there are more (the most frequent).
SHOWN_CLASSES = 15


def _prediction_sections(preds: list[Predictions], class_names: tuple[str, ...], unit: str = "class") -> str:
    if not preds:
        return "<h2>Predictions</h2><p>no teacher or student weights to rebuild.</p>"
    cal_rows = [
        [p.name, _pct(p.correct.mean()), _pct(p.confidence.mean()), _pct(expected_calibration_error(p.confidence, p.correct))]
        for p in preds
    ]
    cal = _table(["model", "test acc", "mean confidence", f"ECE ({ECE_BINS} bins)"], cal_rows, {"model"})
    parts = [_section("Calibration (ECE, reliability)", lambda: cal + reliability_plot(preds))]
    teacher = next((p for p in preds if p.name == "teacher"), None)
    students = [p for p in preds if p.name != "teacher"]
    if teacher is not None and students:
        agree_rows = []
        for s in students:
            a = agreement(teacher.pred, s.pred, s.labels)
            agree_rows.append(
                [
                    s.name,
                    _pct(a["agreement"]),
                    f"{a['teacher_wrong']:,}",
                    _pct(a["agreement_teacher_wrong"]),
                    _pct(a["student_right_where_teacher_wrong"]),
                ]
            )
        header = ["student", "agrees with teacher", "teacher wrong on", "agrees where teacher wrong", "right where teacher wrong"]
        parts.append(_section("Teacher–student agreement (top-1, test split)", lambda: _table(header, agree_rows, {"student"})))
    shown = [p for p in preds if p.name != "student_scratch"] or preds
    k = len(class_names)
    if k > SHOWN_CLASSES + 5:
        top = most_frequent(preds[0].labels, k, SHOWN_CLASSES)
        title = f"Confusion matrices of the {len(top)} most frequent {unit}s of {k} (test split)"
        parts.append(_section(title, confusion_plot, shown, class_names, top))
    else:
        parts.append(_section("Confusion matrices (test split)", confusion_plot, shown, class_names))
    parts.append(_section(f"Per-{unit} precision, recall and F1 (test split)", lambda: _per_class_table(preds, class_names, unit)))
    return "\n".join(parts)


def _per_class_table(preds: list[Predictions], class_names: tuple[str, ...], unit: str) -> str:
    """F1 of every model per class (the most frequent first; at most :data:`SHOWN_CLASSES` + macro F1 over all)."""
    k = len(class_names)
    scores = [per_class_scores(p.pred, p.labels, k) for p in preds]
    order = most_frequent(preds[0].labels, k, k)
    header = [unit, "support", *(f"{p.name} P / R / F1" for p in preds)]
    body = [
        [class_names[c], f"{scores[0]['support'][c]:,}", *(f"{s['precision'][c]:.3f} / {s['recall'][c]:.3f} / {s['f1'][c]:.3f}" for s in scores)]
        for c in order[:SHOWN_CLASSES]
    ]
    present = scores[0]["support"] > 0
    body.append([f"macro F1 ({int(present.sum())} {unit}s in the test split)", "", *(f"{s['f1'][present].mean():.3f}" for s in scores)])
    return _table(header, body, {unit})


def _sentence_section(preds: list[Predictions], class_names: tuple[str, ...], texts: list[str]) -> str:
    """Text runs: test sentences on which the distilled student and the teacher disagree."""
    teacher = next((p for p in preds if p.name == "teacher"), None)
    students = [p for p in preds if p.name not in ("teacher", "student_scratch")]
    if teacher is None or not students:
        return ""
    student = students[-1]
    rows = disagreements(teacher, student)
    if not rows:
        return f"<h2>Sentences</h2><p>{html.escape(student.name)} and the teacher agree on every test sentence.</p>"

    def said(p: Predictions, i: int) -> str:
        return f"{class_names[p.pred[i]]} ({100 * p.confidence[i]:.0f} %)"

    body = [[texts[i], class_names[teacher.labels[i]], said(teacher, i), said(student, i)] for i in rows]
    n = int((teacher.pred != student.pred).sum())
    title = f"Sentences where {student.name} and the teacher disagree ({n} of {len(texts)}; the teacher's most confident first)"
    return f"<h2>{html.escape(title)}</h2>" + _table(["sentence (decoded tokens)", "label", "teacher", student.name], body, {"sentence (decoded tokens)"})


def render_report(run_dir: str | Path) -> str:
    """The page's HTML for a finished run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY).is_file():
        raise ConfigError(f"{run_dir}: no {SUMMARY}; a report needs a finished run (`distil run CONFIG --out {run_dir}`)")
    summary = read_summary(run_dir)
    if summary.get("kind") == "translation":
        from distil.report.translation import render_translation_report

        return render_translation_report(summary, STYLE, _table)
    title = f"{summary.get('name', '')} — {summary['dataset']}"
    machine = summary.get("machine", {})
    meta = (
        f"finished {summary.get('finished', '?')} · {summary.get('wall_seconds', '?')} s · device {summary.get('device', '?')} · "
        f"torch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} threads · <code>{html.escape(summary.get('command', ''))}</code>"
    )
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{meta}</p>']
    parts.append("<h2>Models (test split)</h2>" + _table(columns(summary), rows(summary), LEFT))
    paired = inputs_line(summary)
    if paired:
        parts.append(f'<p class="meta">{html.escape(paired)}</p>')
    metrics = read_metrics(run_dir)
    if metrics:
        parts.append(_section("Training curves", curves_plot, metrics))
    parts.append(_section("Accuracy vs batch-1 latency and vs size", pareto_plot, summary))
    if (run_dir / CONFIG).is_file():
        try:
            preds, class_names, texts = predictions(run_dir, summary)
            tagging = summary.get("data", {}).get("text", {}).get("task") == "tag"
            parts.append(_prediction_sections(preds, class_names, "tag" if tagging else "class"))
            if texts is not None:
                parts.append(_sentence_section(preds, class_names, texts))
        except Exception as err:  # noqa: BLE001 — the table and curves are still worth a page
            parts.append(
                f'<h2>Predictions</h2><p class="err">could not rebuild the models: {html.escape(f"{type(err).__name__}: {err}")}</p>'
            )
    body = "\n".join(parts)
    return f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n'


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` atomically; returns its path."""
    path = Path(run_dir) / REPORT
    text = render_report(run_dir)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
