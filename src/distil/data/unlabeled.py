"""Inputs without labels (transfer sets): an ``.npz`` with only ``x``, a folder of images in any
layout (every image below it, resized to the labelled data's size), or any registered dataset with
its labels dropped (e.g. extra MNIST-1D samples generated with another seed).

They are normalised with the labelled dataset's statistics, so teacher and student see them exactly
like the training inputs. Two checks run before any training: the samples have the labelled data's
shape, and none of them is also a test sample (a transfer set must not leak the test split).

When the labelled data are text (``like.text``), the transfer set must be text too (a loader that
returns :class:`~distil.data.RawText`: ``mr_reviews``, ``text_csv``/``text_jsonl`` with
``label_column: null``, ...); it is tokenized with the labelled data's tokenizer and ``max_length``
(cached like theirs), and a sentence that tokenizes exactly like a test sentence counts as a leak.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.load import as_float, normalize
from distil.data.raw import RawTagged, RawText
from distil.data.registry import check_options, lookup, required_path
from distil.data.split import Dataset, Split
from distil.data.text.cache import cached_encode
from distil.data.text.info import split_words
from distil.data.tokens import is_tokens, lengths, trim
from distil.errors import DataError

#: What a text transfer set can be, for messages.
TEXT_SOURCES = "a text source such as mr_reviews, text_csv or text_jsonl (label_column: null), or text_folder"


def load_unlabeled(name: str, like: Dataset, *, path: str | Path | None = None, max_samples: int | None = None, **options: Any) -> Split:
    """The inputs of ``name`` as an unlabeled split, normalised like ``like`` (``y`` is ``None``)."""
    where = None if path is None else Path(path).expanduser()
    if like.text is not None:
        return _unlabeled_text(name, like, where, max_samples, options)
    if name == "npz":
        x = _npz_inputs(required_path("npz", where, "a .npz file with an array x"))
    elif name == "folder":
        x = _folder_images(required_path("folder", where, "a directory of images (any layout)"), like, **options)
    else:
        entry = lookup(name)
        check_options(name, entry.loader, options)
        raw = entry.loader(where, **options)
        if isinstance(raw, RawText | RawTagged):
            raise DataError(f"unlabeled set {name!r} is text, but the labelled data {like.name!r} (and so the teacher) take inputs of shape {tuple(like.input_shape)}")
        x = raw.train_x if raw.test_x is None or raw.held_out_test else np.concatenate([raw.train_x, raw.test_x])
    if max_samples is not None:
        x = x[:max_samples]
    if tuple(x.shape[1:]) != tuple(like.input_shape):
        raise DataError(
            f"unlabeled set {name!r}{f' ({where})' if where else ''} has samples of shape {tuple(x.shape[1:])}, "
            f"but the labelled data {like.name!r} (and so the teacher) have {tuple(like.input_shape)}"
        )
    mean, std = torch.tensor(like.mean), torch.tensor(like.std)
    split = Split(normalize(as_float(x, None), mean, std))
    leaked = overlap(split.x, like.test.x.cpu())
    if leaked:
        raise DataError(f"unlabeled set {name!r}: {leaked} of its {len(split)} samples are also in the test split of {like.name!r}; use other data (for mnist1d another generation_seed)")
    return split


def overlap(x: torch.Tensor, test: torch.Tensor) -> int:
    """How many rows of ``x`` are bit-identical to a row of ``test`` (token rows: the same ids, padding aside)."""
    seen = set(_row_bytes(test))
    return sum(row in seen for row in _row_bytes(x))


def _row_bytes(x: torch.Tensor) -> list[bytes]:
    if is_tokens(x):
        rows, sizes = x.contiguous().numpy(), lengths(x).tolist()
        return [row[:size].tobytes() for row, size in zip(rows, sizes)]
    return [row.tobytes() for row in x.contiguous().numpy()]


def _unlabeled_text(name: str, like: Dataset, where: Path | None, max_samples: int | None, options: dict[str, Any]) -> Split:
    """The texts of ``name`` tokenized like ``like`` (its tokenizer and max_length), labels dropped."""
    assert like.text is not None
    if name in ("npz", "folder"):
        raise DataError(f"unlabeled set {name!r} holds arrays or images, but the labelled data {like.name!r} are text; use {TEXT_SOURCES}")
    entry = lookup(name)
    check_options(name, entry.loader, options)
    raw = entry.loader(where, **options)
    if isinstance(raw, RawTagged):  # tagged sentences, tags dropped: their words as they are
        words = [list(s) for s in [*raw.train_words, *(raw.test_words or ())]][:max_samples]
        texts = [" ".join(w) for w in words]
    elif isinstance(raw, RawText):
        texts = list(raw.train_texts) + list(raw.test_texts or ())
        texts = texts[:max_samples] if max_samples is not None else texts
        words = None
    else:
        raise DataError(f"unlabeled set {name!r} holds arrays (its loader returned {type(raw).__name__}), but the labelled data {like.name!r} are text; use {TEXT_SOURCES}")
    empty = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if not texts or empty is not None:
        raise DataError(f"unlabeled set {name!r}: " + (f"text {empty} is {texts[empty]!r}; expected a non-empty string" if texts else "it holds no texts"))
    if like.text.task == "tag":
        # Split into words first and tokenize those, as the tagging data (and a served sentence) are.
        sentences = words if words is not None else [split_words(t) or [t.strip()] for t in texts]
        ids = like.text.loaded_tokenizer.encode_words(sentences).ids
    else:
        ids = cached_encode(like.text.loaded_tokenizer, texts)[0].ids
    split = Split(trim(ids).contiguous())
    leaked = overlap(split.x, like.test.x.cpu())
    if leaked:
        raise DataError(f"unlabeled set {name!r}: {leaked} of its {len(split)} sentences are also in the test split of {like.name!r}; remove them from the transfer set")
    return split


def _npz_inputs(file: Path) -> np.ndarray:
    try:
        with np.load(file, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile) or "x" not in archive.files:
                raise DataError(f"{file}: expected a .npz file with an array x (labels, if any, are not used)")
            x = archive["x"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{file}: cannot be read as .npz ({error}); expected an array x") from None
    if x.dtype.kind not in "biuf" or x.ndim < 2 or len(x) == 0:
        raise DataError(f"{file}: array 'x' has shape {x.shape} and dtype {x.dtype}; expected numeric samples (N, L), (N, H, W) or (N, C, H, W)")
    return x[:, None] if x.ndim in (2, 3) else x


def _folder_images(root: Path, like: Dataset, *, channels: int | None = None, image_size: int | None = None) -> np.ndarray:
    """Every image below ``root`` (sub-folders or not), as ``channels`` × the labelled data's H×W by default."""
    from distil.data.sources.image_folder import IMAGE_SUFFIXES, MODES, read_images

    if not root.is_dir():
        raise DataError(f"unlabeled folder {root} is not a directory")
    channels = channels if channels is not None else like.input_shape[0]
    if channels not in MODES:
        raise DataError(f"unlabeled folder: channels must be 1 or 3, got {channels!r}")
    if len(like.input_shape) != 3:
        raise DataError(f"unlabeled folder: images cannot feed {like.name!r}, whose samples have shape {like.input_shape}")
    size = (image_size, image_size) if image_size else tuple(like.input_shape[1:])
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"unlabeled folder {root} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return read_images(files, MODES[channels], size)
