"""The numbers of ``report.html`` beside the table: calibration (ECE), teacher–student agreement,
confusion matrices, the Pareto front, the training curves of ``metrics.jsonl``, and the predictions they
are computed from.

Confusion matrices, agreement and calibration need predictions, so the teacher and the main distilled
student are rebuilt from ``config.yaml`` and their weights and run on the test split. Nothing here draws:
:mod:`distil.report.plots` draws these numbers and :mod:`distil.report.html` lays out the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.tokens import IGNORE
from distil.session import METRICS, read_config

ECE_BINS = 15

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


def per_class_scores(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """Per class: ``precision`` = TP / predicted, ``recall`` = TP / true, ``f1`` = 2PR / (P + R) (0 where
    a denominator is 0), and ``support`` (true count). Arrays of length ``num_classes``."""
    cm = confusion_matrix(pred, labels, num_classes).astype(np.float64)
    tp = np.diag(cm)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def most_frequent(labels: np.ndarray, num_classes: int, k: int) -> list[int]:
    """The ``k`` classes most frequent in ``labels``, most frequent first (ties by class index)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    return [int(c) for c in np.argsort(-counts, kind="stable")[:k] if counts[c] > 0]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ------------------------------------------------------------------------------------------------ curves


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
    """The distilled student the report looks into: the strategy's last student when the run used a
    strategy (its baseline ``student_<method>`` comes first), else ``student_<method>``, else the last
    non-scratch student."""
    own = [m for m in summary["models"] if "source" not in m]
    names = [m["name"] for m in own]
    students = [m["name"] for m in own if m.get("role") == "student" and m.get("method") != "scratch"]
    if summary.get("strategy", "none") not in (None, "none") and students:
        return students[-1]
    if f"student_{method}" in names:
        return f"student_{method}"
    return students[-1] if students else None


def predictions(run_dir: Path, summary: dict[str, Any]) -> tuple[list[Predictions], tuple[str, ...], list[str] | None]:
    """Teacher, scratch student and main distilled student rebuilt from config + weights, run on the
    test split; for text data also the test sentences (decoded from their token ids), else None.

    Tagging data: a prediction per tagged word (every tagged token of the test split, in order), and
    no sentences. Paired data: the teacher predicts from its own inputs of the same test samples."""
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
        side = data.for_teacher() if name == "teacher" else data  # paired data: the teacher's own inputs
        model = load_weights(model_cfg.build(side, cfg.seed), run_dir / entries[name]["weights"], entries[name].get("sha256"))
        logits, labels = predict_logits(model, side.test.x).float(), side.test.y
        if labels.dim() == 2:  # a tag per token: the tagged tokens are the samples
            keep = labels != IGNORE
            logits, labels = logits[keep], labels[keep]
        out.append(Predictions(name, torch.softmax(logits, -1).numpy(), labels.numpy()))
    texts = data.text.decode(data.test.x) if data.text is not None and data.test.y.dim() == 1 else None
    return out, data.class_names, texts


def disagreements(teacher: Predictions, student: Predictions, limit: int = 12) -> list[int]:
    """Test rows where the student's top-1 differs from the teacher's, most confident teacher first."""
    rows = np.flatnonzero(teacher.pred != student.pred)
    return rows[np.argsort(-teacher.confidence[rows], kind="stable")][:limit].tolist()
