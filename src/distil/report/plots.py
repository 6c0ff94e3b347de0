"""The figures of ``report.html``: training curves, Pareto views, confusion matrices, reliability diagrams.

Each function draws one figure with matplotlib from the numbers of :mod:`distil.report.analysis` and
returns it as an ``<img>`` tag whose PNG is embedded as base64, so the page opens anywhere, offline.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: set here only, so importing distil elsewhere never picks a backend

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from distil.report.analysis import ECE_BINS, Predictions, calibration_bins, confusion_matrix, expected_calibration_error, pareto_front
from distil.report.table import human_bytes

ROLE_COLORS = {"teacher": "#c0392b", "student": "#2471a3", "compressed": "#27ae60"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


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


def confusion_plot(preds: list[Predictions], class_names: tuple[str, ...], classes: list[int] | None = None) -> str:
    """counts[true, predicted] per model; ``classes``: only these rows and columns (e.g. the most frequent tags)."""
    keep = list(range(len(class_names))) if classes is None else classes
    class_names = tuple(class_names[c] for c in keep)
    k = len(keep)
    fig, axes = plt.subplots(1, len(preds), figsize=(5.2 * len(preds), 4.6), squeeze=False)
    for ax, p in zip(axes[0], preds):
        cm = confusion_matrix(p.pred, p.labels, p.probs.shape[1])[np.ix_(keep, keep)]
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
