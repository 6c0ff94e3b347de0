"""A transfer set collected by ``distil serve --feedback DIR``: ``.npz`` shards plus ``transfer.json``.

Each ``shard-*.npz`` holds ``x`` (inputs at raw scale, ``(N, *input_shape)``) and ``y`` (the served
model's predictions: pseudo-labels); ``transfer.json`` names the classes. Shards are read in name
order with ``allow_pickle=False``. Unlike the ``npz`` dataset, a class may have no sample (a
deployment sees what it sees); the class list is the served model's.

``distil loop`` reads a feedback folder with its sample ids and the corrections people sent
(``corrections.jsonl``): :func:`load_feedback` for tensor shards, :func:`load_text_feedback` for a
text model's ``served.jsonl`` (one JSON object per served text, ``{"id", "text", "label"}``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distil.data.raw import RawData
from distil.data.registry import register_dataset, required_path
from distil.errors import DataError

#: The files of a feedback folder besides the shards: people's labels, and a text model's served texts.
CORRECTIONS = "corrections.jsonl"
TEXT_FILE = "served.jsonl"

WHAT = "a folder written by `distil serve --feedback DIR` (transfer.json and shard-*.npz)"


@register_dataset("transfer", "inputs captured by `distil serve --feedback DIR`, labelled by the served model's predictions")
def load_transfer(path: Path | None) -> RawData:
    """Concatenate the shards under ``path``; class names and input shape from ``transfer.json``."""
    root = required_path("transfer", path, WHAT)
    meta_file = root / "transfer.json"
    if not meta_file.is_file():
        raise DataError(f"{root}: no transfer.json; expected {WHAT}")
    try:
        meta = json.loads(meta_file.read_text())
        class_names, shape = tuple(meta["class_names"]), tuple(int(d) for d in meta["input_shape"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{meta_file}: not a transfer set description ({err})") from None
    xs, ys = [], []
    for shard in sorted(root.glob("shard-*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as archive:
                x, y = archive["x"], archive["y"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"{shard}: cannot be read as a transfer shard ({err})") from None
        if (
            x.shape[1:] != shape
            or y.shape != (len(x),)
            or y.dtype.kind not in "iu"
            or (len(y) and not 0 <= y.min() <= y.max() < len(class_names))
        ):
            raise DataError(f"{shard}: expected x of shape (N, {', '.join(map(str, shape))}) and labels y in 0..{len(class_names) - 1}")
        xs.append(x.astype(np.float32, copy=False))
        ys.append(y.astype(np.int64, copy=False))
    if not xs:
        raise DataError(f"{root}: the transfer set has no shards yet (nothing was captured)")
    return RawData(np.concatenate(xs), np.concatenate(ys), None, None, class_names, shape, str(root))


#: The label of a feedback sample nobody corrected (cross-entropy's ignore_index: the teacher alone labels it).
UNCORRECTED = -100


@dataclass(frozen=True)
class Feedback:
    """A feedback folder as ``distil loop`` reads it: raw inputs, their ids, what was answered, and the
    corrections people sent (``corrected[i]`` a class index, :data:`UNCORRECTED` where none)."""

    x: np.ndarray  # raw scale, (N, *input_shape)
    ids: tuple[str, ...]
    predicted: np.ndarray  # what the served model answered (a record, not a label)
    corrected: np.ndarray
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.x)


def load_feedback(path: Path) -> Feedback:
    """The shards under ``path`` with their ids, and ``corrections.jsonl`` joined by id (the last one wins).

    A correction naming an id no shard holds (its sample was never written: the server stopped before
    flushing) or a class outside ``transfer.json``'s is skipped; a line cut short by a crash too.
    """
    root = Path(path)
    if (root / TEXT_FILE).is_file() and not any(root.glob("shard-*.npz")):
        raise DataError(f"{root}: a text model's feedback ({TEXT_FILE}); this run takes tensor inputs (images, signals): give it its own feedback folder")
    raw = load_transfer(path)
    ids: list[str] = []
    for shard in sorted(root.glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as archive:
            n = len(archive["y"])
            ids.extend(archive["id"].tolist() if "id" in archive.files else [f"{shard.stem}-{i}" for i in range(n)])
    corrected = read_corrections(root, ids, raw.class_names)
    return Feedback(raw.train_x, tuple(ids), raw.train_y, corrected, raw.class_names, raw.input_shape)


def read_corrections(root: Path, ids: list[str] | tuple[str, ...], class_names: tuple[str, ...]) -> np.ndarray:
    """int64 ``(len(ids),)``: the class index people gave each id in ``root/corrections.jsonl`` (the last
    one wins), :data:`UNCORRECTED` where none. A line naming an id not in ``ids`` (its sample was never
    written: the server stopped before flushing) or a class outside ``class_names`` is skipped; a line
    cut short by a crash too."""
    corrected = np.full(len(ids), UNCORRECTED, np.int64)
    position = {sample_id: i for i, sample_id in enumerate(ids)}
    corrections = Path(root) / CORRECTIONS
    if corrections.is_file():
        for line in corrections.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                i, label = position[record["id"]], class_names.index(record["label"])
            except (ValueError, KeyError, TypeError):
                continue
            corrected[i] = label
    return corrected


@dataclass(frozen=True)
class TextFeedback:
    """A text model's feedback folder as ``distil loop`` reads it: the served texts, their ids, the
    classes answered (a record) and the corrections (``corrected[i]`` a class index or :data:`UNCORRECTED`)."""

    texts: tuple[str, ...]
    ids: tuple[str, ...]
    predicted: tuple[str | None, ...]
    corrected: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)


def served_text_id(record: dict, line: int) -> str:
    """A served text's id: the ``id`` the server wrote, or ``line-N`` (its 0-based line) for a line written before ids existed."""
    value = record.get("id")
    return value if isinstance(value, str) else f"line-{line}"


def served_text_records(file: Path) -> list[dict]:
    """The JSON objects of ``served.jsonl``, one per line (a blank line or one cut short by a crash counts
    as an empty record, so that line numbers, and the ids made from them, stay fixed)."""
    records = []
    try:
        raw = Path(file).read_bytes() if Path(file).is_file() else b""
    except OSError as err:
        raise DataError(f"{file}: cannot be read ({err})") from None
    for line in raw.split(b"\n")[:-1]:  # decoded line by line: a line cut inside a character is one bad line
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is a ValueError
            record = {}
        records.append(record if isinstance(record, dict) else {})
    return records


def load_text_feedback(path: Path) -> TextFeedback:
    """The texts of ``path/served.jsonl`` with their ids, and ``corrections.jsonl`` joined by id; class
    names from ``transfer.json``. A tagger's lines (words and tags, no class) are refused."""
    root = Path(path)
    meta_file, file = root / "transfer.json", root / TEXT_FILE
    if not meta_file.is_file() or not file.is_file():
        raise DataError(f"{root}: expected a text model's feedback folder (transfer.json and {TEXT_FILE}, written by `distil serve RUN --feedback DIR`)")
    try:
        class_names = tuple(json.loads(meta_file.read_text())["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{meta_file}: not a transfer set description ({err})") from None
    texts, ids, predicted = [], [], []
    for line, record in enumerate(served_text_records(file)):
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            continue
        if "tags" in record:
            raise DataError(f"line {line + 1} of {file} holds a tagger's words and tags; distil loop takes a class per text")
        texts.append(text)
        ids.append(served_text_id(record, line))
        predicted.append(record.get("label") if isinstance(record.get("label"), str) else None)
    if not texts:
        raise DataError(f"{file}: no served text yet (nothing was captured)")
    return TextFeedback(tuple(texts), tuple(ids), tuple(predicted), read_corrections(root, ids, class_names), class_names)
