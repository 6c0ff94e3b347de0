"""Feedback capture: inputs the server sees become a transfer set for the next distillation.

Off by default (``distil serve --feedback DIR``); :func:`feedback_writer` picks the writer for the
served model: tensors (:class:`FeedbackWriter`) or text (:class:`TextFeedbackWriter`).

**Tensors.** Inputs are written to ``DIR`` as ``.npz`` shards
(``shard-000000.npz``, ...) of ``x`` — the inputs *before* normalization (raw scale, float32,
``(N, *input_shape)``) — ``y`` — the served model's predicted class, kept as a record of what was
answered — and ``id`` — each sample's id (``"<writer>-<n>"``, unique across server restarts), which
``/predict`` answers as ``feedback_id``; next to ``transfer.json`` (class names, input shape).
``distil loop`` does not learn the served predictions (a student learning its own answers learns
nothing): the teacher labels the inputs with soft targets at distillation time, and a person's
**correction** (:meth:`FeedbackWriter.correct`, ``POST /feedback {"id", "label"}``) is appended to
``corrections.jsonl`` beside the shards and used as a hard label (the last correction of an id wins;
:func:`distil.data.sources.transfer.load_feedback`). The ``transfer`` dataset still reads the folder
with the predictions as pseudo-labels (``data: {name: transfer, path: DIR}``).

**Text.** The served texts are appended to ``DIR/served.jsonl``, one JSON object per line:
``{"id": ..., "text": ..., "label": <the predicted class>}`` (a tagger: ``"words"`` and ``"tags"``, a
tag per word, instead of ``"label"``, and no id), next to ``transfer.json``. Ids and corrections
work as for tensors — ``/predict`` answers ``feedback_ids``, ``POST /feedback {"id", "label"}``
appends to ``corrections.jsonl``, and ``distil loop`` reads both
(:func:`distil.data.sources.transfer.load_text_feedback`); a tagger's words are not corrected. That
file is distil's ``text_jsonl``
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
import secrets
import threading
from pathlib import Path

import numpy as np

from distil.data.sources.transfer import CORRECTIONS, TEXT_FILE, served_text_id, served_text_records
from distil.serve.inputs import Batch
from distil.serve.protocol import InferError
from distil.serve.repository import ServedModel, softmax, word_tags
from distil.weights import atomic_write

META = "transfer.json"
SHARD_GLOB = "shard-*.npz"


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
            "labels": f"y: predictions of the served {labelled_by} (a record; distil loop labels x with the teacher and {CORRECTIONS})",
            "x": "raw scale, before normalization",
        }
        atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        self.class_names = tuple(class_names)
        self._shards = sorted(self.folder.glob(SHARD_GLOB))
        self._known = {str(i) for p in self._shards for i in _ids(p)}
        self.written = sum(_count(p) for p in self._shards)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._ids: list[str] = []
        self._prefix = secrets.token_hex(8)  # this writer's ids cannot meet those of an earlier server (64 random bits)
        self._counter = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return sum(len(x) for x in self._x)

    @property
    def full(self) -> bool:
        return self.written + self.pending >= self.max_samples

    def add(self, x: np.ndarray, labels: np.ndarray) -> list[str]:
        """Queue the normalized batch ``x`` with its predicted ``labels``; returns the ids of those kept."""
        with self._lock:
            room = self.max_samples - self.written - self.pending
            if room <= 0:
                return []
            x, labels = x[:room], labels[:room]
            raw = x * self._std + self._mean if self._mean is not None and self._std is not None else x
            ids = [f"{self._prefix}-{self._counter + i}" for i in range(len(x))]
            self._counter += len(x)
            self._x.append(raw.astype(np.float32))
            self._y.append(labels.astype(np.int64))
            self._ids.extend(ids)
            self._known.update(ids)
            if self.pending >= self.shard_size or self.full:
                self._flush()
            return ids

    def capture(self, model: ServedModel, batch: Batch, logits: np.ndarray) -> list[str]:
        """Queue a served batch with ``model``'s predicted classes; returns the ids of the samples kept."""
        return self.add(batch.x, logits.argmax(axis=1))

    def correct(self, sample_id: str, label: str) -> dict:
        """Store a person's label for a captured sample (``corrections.jsonl``, one fsync'd line).

        An unknown id is a 404, a class the model does not have a 422 naming the classes; nothing is written then.
        A sample still waiting in memory is written first: a correction never outlives its input on disk.
        """
        with self._lock:
            if sample_id in self._ids:
                self._flush()
            return append_correction(self.folder, self.class_names, self._known, sample_id, label)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._x:
            return
        x, y, ids = np.concatenate(self._x), np.concatenate(self._y), np.asarray(self._ids, dtype=np.str_)
        self._x, self._y, self._ids = [], [], []
        path = self.folder / f"shard-{len(self._shards):06d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=y, id=ids)
        atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        self._shards.append(path)
        self.written += len(x)


def append_correction(folder: Path, class_names: tuple[str, ...], known: set[str], sample_id: str, label: str) -> dict:
    """Append ``{"id", "label", "index"}`` to ``folder/corrections.jsonl`` (one fsync'd line) and return it.

    A class outside ``class_names`` is a 422 naming the classes, an id not in ``known`` a 404; nothing is written then.
    """
    if label not in class_names:
        raise InferError(f"unknown class {label!r}; the classes are: {', '.join(class_names)}", 422)
    if sample_id not in known:
        raise InferError(f"no captured sample has the id {sample_id!r} (ids come from /predict's feedback_id)", 404)
    record = {"id": sample_id, "label": label, "index": class_names.index(label)}
    with open(folder / CORRECTIONS, "ab") as f:
        f.write(json.dumps(record).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return record


def _count(shard: Path) -> int:
    with np.load(shard, allow_pickle=False) as archive:
        return len(archive["y"])


def _ids(shard: Path) -> list[str]:
    """The sample ids of a shard (none in shards written before ids existed)."""
    with np.load(shard, allow_pickle=False) as archive:
        return archive["id"].tolist() if "id" in archive.files else []


class TextFeedbackWriter:
    """Served texts with the served model's predictions, appended to ``folder/served.jsonl`` (see the module doc).

    ``tags``: the model is a tagger (its lines hold words and tags; they have no id and take no correction).
    """

    def __init__(
        self,
        folder: str | Path,
        class_names: tuple[str, ...],
        labelled_by: str = "student",
        max_samples: int = 10_000,
        max_bytes: int = 256 << 20,
        shard_size: int = 256,
        tags: bool = False,
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
            "labels": f"predictions of the served {labelled_by} (a record; distil loop labels the texts with the teacher and {CORRECTIONS})",
            "transfer": {"name": "text_jsonl", "path": str(self.file.resolve()), "options": {"label_column": None}},
        }
        atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        self.written, self.size = _whole_lines(self.file)
        self.tags = tags
        self._known = {served_text_id(r, i) for i, r in enumerate(served_text_records(self.file)) if "text" in r}
        self._prefix = secrets.token_hex(8)  # this writer's ids cannot meet those of an earlier server (64 random bits)
        self._counter = 0
        self._lines: list[bytes] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._lines)

    @property
    def full(self) -> bool:
        return self.written + self.pending >= self.max_samples or self.size + sum(map(len, self._lines)) >= self.max_bytes

    def capture(self, model: ServedModel, batch: Batch, logits: np.ndarray) -> list[str] | int:
        """Queue the texts of ``batch`` with ``model``'s predictions; returns the ids of those kept (a
        tagger's texts have none: how many were kept)."""
        assert batch.texts is not None, "a text model's batch carries its texts"
        if model.tags_words:
            assert batch.words is not None
            tags = word_tags(batch, softmax(logits))
            records = [
                {"text": t, "words": w, "tags": [self.class_names[k] for k, _ in row]} for t, w, row in zip(batch.texts, batch.words, tags)
            ]
            return self.add([_line(r) for r in records])
        with self._lock:
            ids = [f"{self._prefix}-{self._counter + i}" for i in range(len(batch.texts))]
            self._counter += len(ids)
        records = [{"id": i, "text": t, "label": self.class_names[int(k)]} for i, t, k in zip(ids, batch.texts, logits.argmax(axis=1))]
        kept = ids[: self.add([_line(r) for r in records])]
        with self._lock:
            self._known.update(kept)
        return kept

    def correct(self, sample_id: str, label: str) -> dict:
        """Store a person's class for a served text (``corrections.jsonl``), as :meth:`FeedbackWriter.correct` does."""
        if self.tags:
            raise InferError("the served model is a tagger: corrections take one class per text, not a tag per word", 409)
        with self._lock:
            if sample_id in self._known:
                self._flush()  # the lines waiting in memory first: a correction never outlives its text on disk
            return append_correction(self.folder, self.class_names, self._known, sample_id, label)

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


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


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
        return TextFeedbackWriter(folder, model.class_names, model.name, max_samples, max_bytes, tags=model.tags_words)
    return FeedbackWriter(folder, model.class_names, model.input_shape, model.mean, model.std, model.name, max_samples, max_bytes)
