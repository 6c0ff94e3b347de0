"""Feedback capture: inputs the server sees become a transfer set for the next distillation.

Off by default (``distil serve --feedback DIR``); :func:`feedback_writer` picks the writer for the
served model: tensors (:class:`FeedbackWriter`) or text (:class:`TextFeedbackWriter`).

**Tensors.** Inputs are written to ``DIR`` as ``.npz`` shards
(``shard-000000.npz``, ...) of ``x`` — the inputs *before* normalization (raw scale, float32,
``(N, *input_shape)``) — and ``y`` — the served model's predicted class, a pseudo-label — next to
``transfer.json`` (class names, input shape, what labelled ``y``). The ``transfer`` dataset reads
the folder (``data: {name: transfer, path: DIR}``), so ``distil distill`` can distil again on what
was served: deploy, collect, distil again.

**Text.** The served texts are appended to ``DIR/served.jsonl``, one JSON object per line:
``{"text": ..., "label": <the predicted class>}`` (a tagger: ``"words"`` and ``"tags"``, a tag per
word, instead of ``"label"``), next to ``transfer.json``. That file is distil's ``text_jsonl``
format, so it is a text transfer set as it stands — ``transfer: {name: text_jsonl, path:
DIR/served.jsonl, options: {label_column: null}}`` — or, with ``label_column: label`` and the
``classes``, pseudo-labelled data. Lines are appended a shard at a time, each shard in one write;
a line cut short by a crash is dropped when the writer opens the file again.

Writing stops at ``max_samples`` samples or ``max_bytes`` of inputs in the folder (what is already
there counts), and samples wait in memory only up to one shard, so memory and disk stay bounded.
Each ``.npz`` shard is written atomically: a reader never sees half a shard.
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import numpy as np

from distil.serve.inputs import Batch
from distil.serve.repository import ServedModel, softmax, word_tags
from distil.weights import atomic_write

META = "transfer.json"
SHARD_GLOB = "shard-*.npz"
TEXT_FILE = "served.jsonl"


class FeedbackWriter:
    def __init__(
        self,
        folder: str | Path,
        class_names: tuple[str, ...],
        input_shape: tuple[int, ...],
        mean: tuple[float, ...] = (),
        std: tuple[float, ...] = (),
        labelled_by: str = "student",
        max_samples: int = 10_000,
        max_bytes: int = 256 << 20,
        shard_size: int = 256,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.input_shape = tuple(input_shape)
        self.sample_bytes = 4 * int(np.prod(input_shape))
        self.max_samples = min(max_samples, max_bytes // self.sample_bytes)
        self.shard_size = shard_size
        channels = (-1,) + (1,) * (len(input_shape) - 1)
        self._mean = np.asarray(mean, np.float32).reshape(channels) if mean else None
        self._std = np.asarray(std, np.float32).reshape(channels) if std else None
        meta = {
            "class_names": list(class_names),
            "input_shape": list(input_shape),
            "labels": f"predictions of the served {labelled_by}",
            "x": "raw scale, before normalization",
        }
        atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        self._shards = sorted(self.folder.glob(SHARD_GLOB))
        self.written = sum(_count(p) for p in self._shards)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return sum(len(x) for x in self._x)

    @property
    def full(self) -> bool:
        return self.written + self.pending >= self.max_samples

    def add(self, x: np.ndarray, labels: np.ndarray) -> int:
        """Queue the normalized batch ``x`` with its predicted ``labels``; returns how many were kept."""
        with self._lock:
            room = self.max_samples - self.written - self.pending
            if room <= 0:
                return 0
            x, labels = x[:room], labels[:room]
            raw = x * self._std + self._mean if self._mean is not None and self._std is not None else x
            self._x.append(raw.astype(np.float32))
            self._y.append(labels.astype(np.int64))
            if self.pending >= self.shard_size or self.full:
                self._flush()
            return len(x)

    def capture(self, model: ServedModel, batch: Batch, logits: np.ndarray) -> int:
        """Queue a served batch with ``model``'s predicted classes; returns how many samples were kept."""
        return self.add(batch.x, logits.argmax(axis=1))

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._x:
            return
        x, y = np.concatenate(self._x), np.concatenate(self._y)
        self._x, self._y = [], []
        path = self.folder / f"shard-{len(self._shards):06d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=y)
        atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        self._shards.append(path)
        self.written += len(x)


def _count(shard: Path) -> int:
    with np.load(shard, allow_pickle=False) as archive:
        return len(archive["y"])


class TextFeedbackWriter:
    """Served texts with the served model's predictions, appended to ``folder/served.jsonl`` (see the module doc)."""

    def __init__(
        self,
        folder: str | Path,
        class_names: tuple[str, ...],
        labelled_by: str = "student",
        max_samples: int = 10_000,
        max_bytes: int = 256 << 20,
        shard_size: int = 256,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / TEXT_FILE
        self.class_names = tuple(class_names)
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.shard_size = shard_size
        meta = {
            "class_names": list(class_names),
            "format": "text_jsonl",
            "file": TEXT_FILE,
            "labels": f"predictions of the served {labelled_by}",
            "transfer": {"name": "text_jsonl", "path": str(self.file.resolve()), "options": {"label_column": None}},
        }
        atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        self.written, self.size = _whole_lines(self.file)
        self._lines: list[bytes] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._lines)

    @property
    def full(self) -> bool:
        return self.written + self.pending >= self.max_samples or self.size + sum(map(len, self._lines)) >= self.max_bytes

    def capture(self, model: ServedModel, batch: Batch, logits: np.ndarray) -> int:
        """Queue the texts of ``batch`` with ``model``'s predictions; returns how many were kept."""
        assert batch.texts is not None, "a text model's batch carries its texts"
        if model.tags_words:
            assert batch.words is not None
            tags = word_tags(batch, softmax(logits))
            records = [
                {"text": t, "words": w, "tags": [self.class_names[k] for k, _ in row]} for t, w, row in zip(batch.texts, batch.words, tags)
            ]
        else:
            records = [{"text": t, "label": self.class_names[int(k)]} for t, k in zip(batch.texts, logits.argmax(axis=1))]
        return self.add([json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records])

    def add(self, lines: list[bytes]) -> int:
        """Queue JSON lines (each ending in a newline) within the caps; returns how many were kept."""
        with self._lock:
            kept = 0
            for line in lines:
                if self.full or self.size + sum(map(len, self._lines)) + len(line) > self.max_bytes:
                    break
                self._lines.append(line)
                kept += 1
            if self.pending >= self.shard_size or (self.full and self._lines):
                self._flush()
            return kept

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._lines:
            return
        chunk = b"".join(self._lines)
        with open(self.file, "ab") as f:  # one write per shard: a crash cuts at most the last line
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        self.written += len(self._lines)
        self.size += len(chunk)
        self._lines = []


def _whole_lines(file: Path) -> tuple[int, int]:
    """Lines and bytes of ``file`` (0, 0 when absent), after cutting a last line left without its newline."""
    if not file.is_file():
        return 0, 0
    data = file.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(file, "r+b") as f:
            f.truncate(end)
    return data.count(b"\n"), end


def feedback_writer(
    model: ServedModel, folder: str | Path, max_samples: int = 10_000, max_bytes: int = 256 << 20
) -> FeedbackWriter | TextFeedbackWriter:
    """The writer that captures what ``model`` serves: texts for a text model, tensor shards otherwise."""
    if model.is_text:
        return TextFeedbackWriter(folder, model.class_names, model.name, max_samples, max_bytes)
    return FeedbackWriter(folder, model.class_names, model.input_shape, model.mean, model.std, model.name, max_samples, max_bytes)
