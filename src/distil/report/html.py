"""``DIR/report.html``: one self-contained page per run — the table, curves, Pareto views, confusion, calibration.

The table is :func:`distil.report.table.rows` (the terminal table's rows); curves come from ``metrics.jsonl``;
the Pareto views from ``summary.json`` (compressed rows included). Confusion matrices, agreement and
calibration need predictions, so the teacher and the main distilled student are rebuilt from
``config.yaml`` and their weights and run on the test split. Plots are PNGs embedded as base64, so the
file opens anywhere, offline, and can be mailed as one attachment.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: set here only, so importing distil elsewhere never picks a backend

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from distil.errors import ConfigError
from distil.report.table import COLUMNS, LEFT, human_bytes, rows
from distil.session import CONFIG, METRICS, SUMMARY, read_config, read_summary
from distil.weights import atomic_write

REPORT = "report.html"
ECE_BINS = 15
ROLE_COLORS = {"teacher": "#c0392b", "student": "#2471a3", "compressed": "#27ae60"}

# ------------------------------------------------------------------------------------------------ maths


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin over [0, 1]: count, mean confidence, accuracy (NaN where empty).

    Bin b holds confidences in ((b-1)/B, b/B]; a confidence of exactly 0 falls in the first bin.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, weights=confidence, minlength=bins) / count
        acc = np.bincount(index, weights=correct, minlength=bins) / count
    return {"count": count, "confidence": conf, "accuracy": acc, "edges": np.linspace(0, 1, bins + 1)}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017, "On Calibration of Modern Neural Networks"), equal-width bins:

    ECE = Σ_b |B_b| / n · |acc(B_b) − conf(B_b)|, where conf is the top-1 softmax probability.
    """
    b = calibration_bins(confidence, correct, bins)
    n = b["count"].sum()
    if n == 0:
        raise ValueError("ECE of no predictions")
    full = b["count"] > 0
    return float(np.sum(b["count"][full] / n * np.abs(b["accuracy"][full] - b["confidence"][full])))


def agreement(teacher_pred: np.ndarray, student_pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 agreement: on all samples, and on those the teacher gets wrong (NaN if it gets none wrong).

    ``student_right_where_teacher_wrong`` says how often the student is right where it disagrees usefully.
    """
    teacher_pred, student_pred, labels = (np.asarray(a) for a in (teacher_pred, student_pred, labels))
    same = teacher_pred == student_pred
    wrong = teacher_pred != labels
    return {
        "agreement": float(same.mean()),
        "agreement_teacher_wrong": float(same[wrong].mean()) if wrong.any() else float("nan"),
        "teacher_wrong": int(wrong.sum()),
        "student_right_where_teacher_wrong": float((student_pred[wrong] == labels[wrong]).mean()) if wrong.any() else float("nan"),
    }


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(labels) * num_classes + np.asarray(pred), minlength=num_classes**2).reshape(num_classes, num_classes)


# ------------------------------------------------------------------------------------------------ predictions


@dataclass
class Predictions:
    name: str
    probs: np.ndarray  # softmax, (n, C)
    labels: np.ndarray

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.labels


def main_student(summary: dict[str, Any], method: str) -> str | None:
    """The distilled student the report looks into: ``student_<method>``, else the last non-scratch student."""
    own = [m for m in summary["models"] if "source" not in m]
    names = [m["name"] for m in own]
    if f"student_{method}" in names:
        return f"student_{method}"
    students = [m["name"] for m in own if m.get("role") == "student" and m.get("method") != "scratch"]
    return students[-1] if students else None


def predictions(run_dir: Path, summary: dict[str, Any]) -> tuple[list[Predictions], tuple[str, ...]]:
    """Teacher, scratch student and main distilled student rebuilt from config + weights, run on the test split."""
    from distil.engine.evaluate import predict_logits
    from distil.weights import load_weights

    cfg = read_config(run_dir)
    data = cfg.data.load(cfg.seed)
    entries = {m["name"]: m for m in summary["models"] if "source" not in m}
    wanted = [("teacher", cfg.teacher), ("student_scratch", cfg.student)]
    student = main_student(summary, cfg.distill.method)
    if student is not None and entries[student]["arch"] == cfg.student.arch:
        wanted.append((student, cfg.student))
    out = []
    for name, model_cfg in wanted:
        if name not in entries or model_cfg is None or entries[name]["arch"] != model_cfg.arch:
            continue
        model = load_weights(model_cfg.build(data, cfg.seed), run_dir / entries[name]["weights"], entries[name].get("sha256"))
        probs = torch.softmax(predict_logits(model, data.test.x).float(), 1).numpy()
        out.append(Predictions(name, probs, data.test.y.numpy()))
    return out, data.class_names


# ------------------------------------------------------------------------------------------------ plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def read_metrics(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl grouped by model, in file order."""
    path = run_dir / METRICS
    by_model: dict[str, list[dict[str, Any]]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                by_model.setdefault(record["model"], []).append(record)
    return by_model


def curves_plot(metrics: dict[str, list[dict[str, Any]]]) -> str:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, records in metrics.items():
        epochs = [r["epoch"] for r in records]
        (line,) = ax_loss.plot(epochs, [r["loss"] for r in records], marker=".", label=name)
        acc = [r.get("val_accuracy") for r in records]
        if any(a is not None for a in acc):
            ax_acc.plot(epochs, [100 * a if a is not None else np.nan for a in acc], marker=".", color=line.get_color(), label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss (objective)", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _kind(m: dict[str, Any]) -> str:
    return "compressed" if "source" in m else m.get("role", "student")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# Where a point's name may go, in points from the point (then the text's alignment): the first that
# stays inside the axes and overlaps no name placed before (nor the legend) is taken, so the names of
# points close together (a model and its ONNX export share an accuracy) are stacked, not overprinted.
_LABEL_SPOTS = [(dx, dy) for dy in (4, -11, 13, -20, 22, -29, 31, -38) for dx in (5, -5)]


def _label_points(ax, points: list[tuple[float, float]], names: list[str]) -> None:
    renderer = ax.figure.canvas.get_renderer()
    placed = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
    inside = ax.get_window_extent(renderer)
    for (x, y), name in sorted(zip(points, names), key=lambda item: (-item[0][1], item[0][0])):
        for dx, dy in _LABEL_SPOTS:
            text = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha="left" if dx > 0 else "right")
            box = text.get_window_extent(renderer).expanded(1.02, 1.1)
            if inside.x0 <= box.x0 and box.x1 <= inside.x1 and not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:  # no free spot: the first one, overlapping
            text = ax.annotate(name, (x, y), textcoords="offset points", xytext=_LABEL_SPOTS[0], fontsize=7)
            box = text.get_window_extent(renderer)
        placed.append(box)


def pareto_plot(summary: dict[str, Any]) -> str:
    models = [m for m in summary["models"] if m.get("latency_ms_b1") and m.get("size_bytes")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "latency_ms_b1", "latency at batch 1 (ms, log)"), (axes[1], "size_bytes", "size on disk (log)")):
        points = [(m[key], 100 * m["accuracy"]) for m in models]
        front = pareto_front(points)
        ax.step(
            [points[i][0] for i in front], [points[i][1] for i in front], where="post", color="#999", lw=1, zorder=1, label="Pareto front"
        )
        for kind, color in ROLE_COLORS.items():
            mine = [(p, m) for p, m in zip(points, models) if _kind(m) == kind]
            if mine:
                ax.scatter([p[0] for p, _ in mine], [p[1] for p, _ in mine], color=color, label=kind, zorder=2)
        ax.set_xscale("log")
        # a few labelled ticks even within one decade: sizes at powers of four (round in KB / MB), latency at 1-2-5
        if key == "size_bytes":
            ax.xaxis.set_major_locator(LogLocator(base=4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v)))
        else:
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15, y=0.08)  # room for the names of the points at the edges
        ax.set(xlabel=label, ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        _label_points(ax, points, [m["name"] for m in models])
    axes[0].set_title("accuracy vs latency")
    axes[1].set_title("accuracy vs size")
    return _png(fig)


def confusion_plot(preds: list[Predictions], class_names: tuple[str, ...]) -> str:
    k = len(class_names)
    fig, axes = plt.subplots(1, len(preds), figsize=(5.2 * len(preds), 4.6), squeeze=False)
    for ax, p in zip(axes[0], preds):
        cm = confusion_matrix(p.pred, p.labels, k)
        ax.imshow(cm, cmap="Blues")
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if cm[i, j] > cm.max() / 2 else "black"
                    )
            ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
            ax.set_yticks(range(k), class_names, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title=f"{p.name} ({100 * p.correct.mean():.2f} %)")
    return _png(fig)


def reliability_plot(preds: list[Predictions]) -> str:
    fig, axes = plt.subplots(1, len(preds), figsize=(4.2 * len(preds), 4), squeeze=False)
    for ax, p in zip(axes[0], preds):
        b = calibration_bins(p.confidence, p.correct)
        centers, width = (b["edges"][:-1] + b["edges"][1:]) / 2, 1 / ECE_BINS
        full = b["count"] > 0
        ax.bar(centers[full], b["accuracy"][full], width=width, edgecolor="black", color="#5dade2", label="accuracy")
        low = np.minimum(b["confidence"][full], b["accuracy"][full])
        gap = np.abs(b["confidence"][full] - b["accuracy"][full])
        ax.bar(
            centers[full],
            gap,
            bottom=low,
            width=width,
            facecolor="none",
            edgecolor="#e74c3c",
            hatch="//",
            lw=0.8,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "--", color="#555", lw=1)
        ece = expected_calibration_error(p.confidence, p.correct)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{p.name}: ECE {100 * ece:.2f} %")
        ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


# ------------------------------------------------------------------------------------------------ page

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


def _prediction_sections(preds: list[Predictions], class_names: tuple[str, ...]) -> str:
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
    parts.append(_section("Confusion matrices (test split)", confusion_plot, shown, class_names))
    return "\n".join(parts)


def render_report(run_dir: str | Path) -> str:
    """The page's HTML for a finished run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY).is_file():
        raise ConfigError(f"{run_dir}: no {SUMMARY}; a report needs a finished run (`distil run CONFIG --out {run_dir}`)")
    summary = read_summary(run_dir)
    title = f"{summary.get('name', '')} — {summary['dataset']}"
    machine = summary.get("machine", {})
    meta = (
        f"finished {summary.get('finished', '?')} · {summary.get('wall_seconds', '?')} s · device {summary.get('device', '?')} · "
        f"torch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} threads · <code>{html.escape(summary.get('command', ''))}</code>"
    )
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{meta}</p>']
    parts.append("<h2>Models (test split)</h2>" + _table(COLUMNS, rows(summary), LEFT))
    metrics = read_metrics(run_dir)
    if metrics:
        parts.append(_section("Training curves", curves_plot, metrics))
    parts.append(_section("Accuracy vs batch-1 latency and vs size", pareto_plot, summary))
    if (run_dir / CONFIG).is_file():
        try:
            preds, class_names = predictions(run_dir, summary)
            parts.append(_prediction_sections(preds, class_names))
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
