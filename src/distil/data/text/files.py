"""Reading sentences and their labels from a user's files: CSV, JSON lines, a folder of ``.txt`` files.

Every reader checks as it goes and names the file and the row (or line) of the first problem and
what was expected: bytes that are not UTF-8, an empty text, a missing column or key (listing the ones
there are), an empty file or folder. Labels are kept as strings here and turned into class indices by
:func:`class_labels`, which also reports a label outside the class list.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distil.errors import DataError

#: Files of a text folder.
TEXT_SUFFIX = ".txt"
FOLDER_LAYOUT = "a directory with one sub-folder of .txt files per class (one example per file), optionally inside train/ and test/"


@dataclass(frozen=True)
class TextRows:
    """Texts read from one file, their labels as written (None: no label column), and where each came from."""

    texts: list[str]
    labels: list[str] | None
    where: list[str]


def decode(file: Path, data: bytes, errors: str = "strict") -> str:
    """``data`` as UTF-8 text (a BOM dropped); DataError naming the line of the first bad byte."""
    try:
        return data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{file}, line {line}: bytes that are not UTF-8 ({data[error.start : error.end].hex(' ')} at byte {error.start}); "
            "expected a UTF-8 text file (save it as UTF-8)"
        ) from None


def read_bytes(file: Path, what: str) -> bytes:
    """The contents of ``file``, which must be a non-empty file holding ``what``."""
    if file.is_dir():
        raise DataError(f"{file} is a directory; expected {what}")
    if not file.is_file():
        raise DataError(f"{file} does not exist; expected {what}")
    data = file_bytes(file)
    if not data.strip():
        raise DataError(f"{file} is empty; expected {what}")
    return data


def file_bytes(file: Path) -> bytes:
    """The bytes of ``file``; DataError when it cannot be read (permissions, a vanished file)."""
    try:
        return file.read_bytes()
    except OSError as error:
        raise DataError(f"{file} cannot be read ({error.strerror or error})") from None


def read_csv(file: Path, text_column: str, label_column: str | None, *, delimiter: str = ",", errors: str = "strict") -> TextRows:
    """The ``text_column`` (and ``label_column``) of each row of the CSV ``file``, whose first line names the columns."""
    wanted = [text_column] + ([label_column] if label_column is not None else [])
    what = f"a CSV file with a header line naming the columns ({', '.join(wanted)}) and one row per example"
    text = decode(file, read_bytes(file, what), errors)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as error:
        raise DataError(f"{file}, line 1: not a CSV header ({error}); expected {what}") from None
    missing = [c for c in wanted if c not in header]
    if missing:
        hint = " (for a transfer set without labels set label_column: null)" if missing == [label_column] else ""
        raise DataError(f"{file} has no column {', '.join(map(repr, missing))}{hint}; its columns are: {', '.join(map(repr, header))}")
    text_at = header.index(text_column)
    label_at = header.index(label_column) if label_column is not None else None
    texts: list[str] = []
    labels: list[str] = []
    where: list[str] = []
    row = 0
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DataError(f"row {row + 1} of {file} (line {line}): not valid CSV ({error})") from None
        here, line = line, reader.line_num + 1
        if not fields:  # a blank line
            continue
        row += 1
        place = f"row {row} of {file} (line {here})"
        if len(fields) != len(header):
            raise DataError(f"{place} has {len(fields)} fields; expected {len(header)}, one per column of the header ({', '.join(header)})")
        texts.append(_text(fields[text_at], place))
        if label_at is not None:
            labels.append(_label(fields[label_at].strip(), place, label_column))
        where.append(place)
    if not texts:
        raise DataError(f"{file} has a header but no rows; expected {what}")
    return TextRows(texts, labels if label_column is not None else None, where)


def read_jsonl(file: Path, text_column: str, label_column: str | None) -> TextRows:
    """The ``text_column`` (and ``label_column``) of each JSON object of ``file``, one per line (blank lines skipped)."""
    wanted = [text_column] + ([label_column] if label_column is not None else [])
    what = f"a JSON-lines file: one object per line with keys {', '.join(map(repr, wanted))}"
    text = decode(file, read_bytes(file, what))
    texts: list[str] = []
    labels: list[str] = []
    where: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        place = f"line {number} of {file}"
        try:
            record = json.loads(line)
        except ValueError as error:
            raise DataError(f"{place} is not JSON ({error}); expected {what}") from None
        if not isinstance(record, dict):
            raise DataError(f"{place} is a JSON {type(record).__name__}, not an object; expected {what}")
        missing = [k for k in wanted if k not in record]
        if missing:
            hint = " (for a transfer set without labels set label_column: null)" if missing == [label_column] else ""
            raise DataError(f"{place} has no key {', '.join(map(repr, missing))}{hint}; it has keys: {', '.join(map(repr, record))}")
        value = record[text_column]
        if not isinstance(value, str):
            raise DataError(f"{place}: {text_column!r} is {type(value).__name__} {value!r}; expected the text as a string")
        texts.append(_text(value, place))
        if label_column is not None:
            label = record[label_column]
            if isinstance(label, bool) or not isinstance(label, str | int):
                raise DataError(
                    f"{place}: label {label_column!r} is {type(label).__name__} {label!r}; expected a class name (string) or an integer"
                )
            labels.append(_label(str(label).strip(), place, label_column))
        where.append(place)
    if not texts:
        raise DataError(f"{file} has no JSON lines; expected {what}")
    return TextRows(texts, labels if label_column is not None else None, where)


def read_folder(directory: Path) -> TextRows:
    """Every ``.txt`` file of each class sub-folder of ``directory`` (the folder's name is the label)."""
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory; expected {FOLDER_LAYOUT}")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{directory} has no class sub-folders; expected {FOLDER_LAYOUT}")
    texts: list[str] = []
    labels: list[str] = []
    where: list[str] = []
    for name in classes:
        files = sorted(
            p for p in (directory / name).iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() == TEXT_SUFFIX
        )
        if not files:
            raise DataError(f"class folder {directory / name} has no {TEXT_SUFFIX} files; expected one example per file")
        for file in files:
            texts.append(_text(decode(file, file_bytes(file)), f"{file} (one example per file)"))
            labels.append(name)
            where.append(str(file))
    return TextRows(texts, labels, where)


def class_labels(rows: TextRows, classes: Sequence[str], origin: str) -> np.ndarray:
    """The index in ``classes`` of each label of ``rows``; DataError naming the first row whose label is not a class.

    ``origin`` says where the class list came from, for the message (e.g. "option classes").
    """
    assert rows.labels is not None
    index = {name: i for i, name in enumerate(classes)}
    out = np.empty(len(rows.labels), dtype=np.int64)
    for i, label in enumerate(rows.labels):
        if label not in index:
            raise DataError(f"{rows.where[i]}: label {label!r} is not one of the classes {list(classes)} ({origin})")
        out[i] = index[label]
    return out


def class_names(labels: Sequence[str], classes: Sequence[Any] | None, option: str) -> tuple[str, ...]:
    """The class list: ``classes`` as strings (checked), or the sorted distinct ``labels`` (numerically when all are integers)."""
    if classes is None:
        distinct = set(labels)
        numeric = all(_is_int(label) for label in distinct)
        return tuple(sorted(distinct, key=(lambda s: (int(s), s)) if numeric else None))
    if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise DataError(f"option {option} must be a non-empty list of class names, got {classes!r}")
    if any(isinstance(c, bool) or not isinstance(c, str | int) for c in classes):
        raise DataError(f"option {option} must list class names (strings or integers), got {list(classes)!r}")
    names = tuple(str(c).strip() for c in classes)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated or not all(names):
        raise DataError(f"option {option} has {'repeated names ' + str(repeated) if repeated else 'an empty name'}: {list(classes)!r}")
    return names


def _is_int(label: str) -> bool:
    try:
        int(label)
    except ValueError:
        return False
    return True


def _text(value: str, place: str) -> str:
    text = value.strip()
    if not text:
        raise DataError(f"{place}: the text is empty; every example needs some text")
    return text


def _label(value: str, place: str, column: str | None) -> str:
    if not value:
        raise DataError(f"{place}: the label ({column!r}) is empty")
    return value
