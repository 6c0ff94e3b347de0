"""What differs between the kinds of run ``distil loop`` takes: how the feedback folder becomes model
inputs, what the ONNX export traces, and what the promoted row adds. The loop itself
(:mod:`distil.loop.feedback_loop`) is one for every kind.

* **tensor** (images, signals): ``shard-*.npz`` inputs at raw scale (:func:`~distil.data.sources.transfer.load_feedback`),
  normalized with the run's statistics; the export traces a random batch.
* **text** (a label per text): ``served.jsonl`` (:func:`~distil.data.sources.transfer.load_text_feedback`),
  tokenized by the run's own :class:`~distil.data.TextInfo` — the tokenizer the training data were
  tokenized with, checked by its sha256 — into right-padded ids; the export traces training sentences
  (dynamic batch and length, as ``distil compress`` and ``distil serve`` export text models); the row
  adds the tokenizer's latency, like every text row.

Tagging runs (a tag per word) and paired runs (the teacher sees another input) are refused by
:func:`input_kind`, naming what is supported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.sources.transfer import UNCORRECTED
from distil.errors import DataError

SUPPORTED = "image and signal runs (tensor inputs) and text-classification runs (a label per text)"


@dataclass(frozen=True)
class LoopFeedback:
    """A feedback folder as the loop trains on it: ``x`` the model's inputs (normalized tensors, or token
    ids ``(N, L)`` right-padded), each sample's ``id``, ``corrected`` (a class index, or −100) and
    ``keys``, what decides whether a sample is held out (its id; a text's own words for text: the same
    text served twice is held out twice or trained on twice, never both)."""

    x: torch.Tensor
    ids: tuple[str, ...]
    corrected: np.ndarray
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class InputKind:
    """The kind-specific parts of the loop (see the module doc)."""

    name: str
    read: Callable[[Path, Path, Any], LoopFeedback]  # (run, feedback folder, the run's Dataset) -> inputs
    export_example: Callable[[Any], torch.Tensor | None]  # what the ONNX export traces (None: a random batch)
    row_extras: Callable[[Any, dict[str, Any]], dict[str, Any]]  # (Dataset, measured row) -> extra columns


def _read_tensors(run: Path, folder: Path, data) -> LoopFeedback:
    from distil.data.sources.transfer import load_feedback

    fb = load_feedback(folder)
    if fb.input_shape != tuple(data.input_shape) or fb.class_names != tuple(data.class_names):
        raise DataError(
            f"{folder}: the feedback's inputs {list(fb.input_shape)} and classes {list(fb.class_names)} are not the run's "
            f"({list(data.input_shape)}, {list(data.class_names)}); collect it with `distil serve {run} --feedback {folder}`"
        )
    shape = (1, -1) + (1,) * (fb.x.ndim - 2)
    x = (fb.x - np.asarray(data.mean, np.float32).reshape(shape)) / np.asarray(data.std, np.float32).reshape(shape)
    return LoopFeedback(torch.from_numpy(x.astype(np.float32)), fb.ids, fb.corrected, fb.ids)


def _read_texts(run: Path, folder: Path, data) -> LoopFeedback:
    from distil.data.sources.transfer import load_text_feedback

    fb = load_text_feedback(folder)
    if fb.class_names != tuple(data.class_names):
        raise DataError(
            f"{folder}: the feedback's classes {list(fb.class_names)} are not the run's {list(data.class_names)}; "
            f"collect it with `distil serve {run} --feedback {folder}`"
        )
    recorded = _recorded_tokenizer(run)
    if recorded is not None and recorded != data.text.tokenizer_sha256:
        raise DataError(
            f"{run}: the tokenizer {data.text.tokenizer_dir} is not the one the run was trained with (its tokenizer.json "
            f"has sha256 {data.text.tokenizer_sha256[:12]}…, the run recorded {recorded[:12]}…); restore the run's tokenizer"
        )
    return LoopFeedback(data.text.encode(fb.texts), fb.ids, _corrections_per_text(fb.texts, fb.corrected), fb.texts)


def _recorded_tokenizer(run: Path) -> str | None:
    """The sha256 of the tokenizer the run was trained with (``summary.json``'s ``data.text``), if recorded."""
    from distil.session import read_summary

    text = read_summary(run).get("data", {}).get("text")
    return text.get("tokenizer_sha256") if isinstance(text, dict) else None


def _corrections_per_text(texts: tuple[str, ...], corrected: np.ndarray) -> np.ndarray:
    """A correction of one served copy of a text holds for every copy of it (the latest corrected copy's
    class), so that the same words never carry the teacher's class in one row and a person's in another."""
    latest: dict[str, int] = {}
    for text, label in zip(texts, corrected):
        if label != UNCORRECTED:
            latest[text] = int(label)
    return np.array([latest.get(t, int(c)) for t, c in zip(texts, corrected)], dtype=np.int64)


def _tokenizer_latency(data, measured: dict[str, Any]) -> dict[str, Any]:
    from distil.engine.measure import tokenize_latency_ms

    tokenize_ms = tokenize_latency_ms(data.text)
    return {"tokenize_ms_b1": round(tokenize_ms, 4), "latency_ms_b1_text": round(measured["latency_ms_b1"] + tokenize_ms, 4)}


KINDS: dict[str, InputKind] = {
    "tensor": InputKind("tensor", _read_tensors, lambda data: None, lambda data, measured: {}),
    "text": InputKind("text", _read_texts, lambda data: data.train.x[:8], _tokenizer_latency),
}


def input_kind(run: Path, data) -> InputKind:
    """The kind of ``run`` (its loaded Dataset ``data``), or a DataError naming what the loop supports."""
    if data.train.x_teacher is not None:
        raise DataError(f"{run}: the run's data are paired (the teacher sees another input); distil loop takes {SUPPORTED}")
    if data.text is None:
        return KINDS["tensor"]
    if data.text.task != "classify":
        raise DataError(f"{run}: a {data.text.task!r} text run (a tag per word); distil loop takes {SUPPORTED}")
    return KINDS["text"]
