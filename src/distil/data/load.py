"""``load_dataset``: run a dataset's loader, then do the common work once for every dataset.

The loader is a registered one or one imported from ``"package.module:loader"`` (see
:mod:`distil.data.registry`); from here on the two are the same:

1. check the options against the loader's signature, run it, check what it returned;
2. carve a test split (a fixed 20 %, the same for every run seed) when the source has none;
3. carve the validation split from the training data with ``seed``;
4. compute per-channel mean/std on the remaining training part only and normalize every split.

A loader that returns :class:`~distil.data.RawText` (sentences) gets the same steps 1–3; step 4 is
tokenization instead (:mod:`distil.data.text.build`): ``tokenizer`` and ``max_length`` apply to it. A
loader that returns :class:`~distil.data.RawTagged` (words with a tag each) is tokenized into a tag per
token (:mod:`distil.data.text.tagging`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.data.raw import RawData, RawTagged, RawText
from distil.data.registry import check_options, lookup, qualified_name
from distil.data.split import Dataset, Pairing, Split
from distil.data.text.build import check_raw_text, text_dataset
from distil.data.text.tagging import check_raw_tagged, tagged_dataset
from distil.data.text.tokenizer import DEFAULT_MAX_LENGTH, check_max_length
from distil.errors import DataError

#: Fraction of the data held out as the test split when a source has none.
CARVED_TEST_FRACTION = 0.2
#: Seed of that carve. Fixed, not the run's seed: runs with different seeds must be compared on the
#: same test samples.
CARVED_TEST_SEED = 0


def load_dataset(
    name: str,
    *,
    path: str | Path | None = None,
    val_size: float = 0.1,
    seed: int = 0,
    tokenizer: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    **options: Any,
) -> Dataset:
    """Load dataset ``name`` as normalized (or, for text, tokenized) in-memory splits.

    ``name`` is a registered dataset (see :func:`~distil.data.list_datasets`) or
    ``"package.module:loader"``, a loader of your own that is imported, checked and used like a
    registered one (``loader(path, **options) -> RawData | RawText``).

    ``path`` is where the data is, for datasets that read files. ``val_size`` is the size of the
    validation split carved from the source's training data: an int is a count, a float in (0, 1) a
    fraction; it must leave at least one sample on each side. ``seed`` chooses that split (the same
    seed gives the same split). ``options`` go to the dataset's loader (e.g. ``num_samples`` for
    ``mnist1d``); an option it does not take is an error that lists the ones it does.

    Text datasets only: ``tokenizer`` names the tokenizer folder (``None``: ``"minilm"``; or
    ``"hf:PATH"``, or a folder with a tokenizer.json) and ``max_length`` the tokens kept per sentence
    (longer ones are cut, and counted in ``Dataset.text.truncated``). Naming a tokenizer for a
    dataset of arrays is an error.
    """
    entry = lookup(name)
    check_options(name, entry.loader, options)
    _check_val_size(val_size)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed must be an integer, got {seed!r}")
    check_max_length(max_length)
    where = None if path is None else Path(path).expanduser()

    raw = entry.loader(where, **options)
    source = raw.source if isinstance(raw, RawData | RawText | RawTagged) and raw.source else (str(where) if where is not None else f"loader {qualified_name(entry.loader)}")
    if isinstance(raw, RawText):
        check_raw_text(name, raw)
        train_index, val_index, test_index = carve_splits(name, len(raw.train_texts), raw.test_texts is not None, val_size, seed)
        return text_dataset(name, raw, train_index, val_index, test_index, tokenizer=tokenizer, max_length=max_length, source=source)
    if isinstance(raw, RawTagged):
        check_raw_tagged(name, raw)
        train_index, val_index, test_index = carve_splits(name, len(raw.train_words), raw.test_words is not None, val_size, seed)
        return tagged_dataset(name, raw, train_index, val_index, test_index, tokenizer=tokenizer, max_length=max_length, source=source)
    if tokenizer is not None:
        raise DataError(f"dataset {name!r} is not text (its loader returned arrays), so it takes no tokenizer; remove data.tokenizer ({tokenizer!r})")
    _check_raw(name, raw)

    train_index, val_index, test_index = carve_splits(name, len(raw.train_x), raw.test_x is not None, val_size, seed)
    train_x = as_float(raw.train_x, train_index)
    mean, std = _channel_stats(train_x)
    train = Split(normalize(train_x, mean, std), _labels(raw.train_y, train_index))
    val = Split(normalize(as_float(raw.train_x, val_index), mean, std), _labels(raw.train_y, val_index))
    if test_index is None:
        assert raw.test_x is not None and raw.test_y is not None
        test = Split(normalize(as_float(raw.test_x, None), mean, std), _labels(raw.test_y, None))
    else:
        test = Split(normalize(as_float(raw.train_x, test_index), mean, std), _labels(raw.train_y, test_index))
    pairing = None
    if raw.train_x_teacher is not None:
        train, val, test, pairing = _paired(raw, (train, val, test), (train_index, val_index, test_index))

    return Dataset(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=len(raw.class_names),
        class_names=tuple(raw.class_names),
        input_shape=tuple(int(d) for d in raw.input_shape),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        source=source,
        pairing=pairing,
    )


def _paired(raw: RawData, splits: tuple[Split, Split, Split], indices: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> tuple[Split, Split, Split, Pairing]:
    """The three splits with the teacher's inputs of the same rows, normalized with their own training statistics."""
    assert raw.train_x_teacher is not None
    train_index, val_index, test_index = indices
    inputs = [as_float(raw.train_x_teacher, train_index), as_float(raw.train_x_teacher, val_index)]
    inputs.append(as_float(raw.train_x_teacher, test_index) if test_index is not None else as_float(raw.test_x_teacher, None))  # type: ignore[arg-type]
    mean, std = _channel_stats(inputs[0])
    train, val, test = (Split(s.x, s.y, normalize(x, mean, std)) for s, x in zip(splits, inputs))
    pairing = Pairing(tuple(int(d) for d in raw.train_x_teacher.shape[1:]), tuple(mean.tolist()), tuple(std.tolist()))
    return train, val, test, pairing


# --- splitting ----------------------------------------------------------------------------------------


def carve_splits(name: str, n: int, has_test: bool, val_size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Indices (into the source's training samples) of train and val, and of the carved test split.

    The test indices are None when the source has its own test split; otherwise a fixed
    :data:`CARVED_TEST_FRACTION` is carved with :data:`CARVED_TEST_SEED` first, and validation is
    carved from the rest with ``seed``. Arrays and texts are split by this one function.
    """
    if has_test:
        pool, test_index = np.arange(n), None
    else:
        pool, test_index = _carve(n, _carved_test_count(name, n), CARVED_TEST_SEED)
    order, val_order = _carve(len(pool), _val_count(name, val_size, len(pool)), seed)
    return pool[order], pool[val_order], test_index


def _carve(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` at random (seeded) into the rest and ``size`` held-out indices, both sorted.

    Sorted, so that a split is a choice of samples, not an order; the trainer shuffles anyway.
    """
    permutation = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(permutation[size:]), np.sort(permutation[:size])


def _check_val_size(val_size: Any) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, int | float):
        raise DataError(f"val_size must be a count (int) or a fraction (float in (0, 1)), got {val_size!r}")
    if isinstance(val_size, float) and not 0 < val_size < 1:
        raise DataError(f"val_size as a fraction must be in (0, 1), got {val_size}; use an int for a count")
    if isinstance(val_size, int) and val_size < 1:
        raise DataError(f"val_size must be at least 1 sample (the best epoch is chosen on it), got {val_size}")


def _val_count(name: str, val_size: float, n: int) -> int:
    count = val_size if isinstance(val_size, int) else round(val_size * n)
    if not 1 <= count <= n - 1:
        raise DataError(
            f"val_size={val_size} asks for {count} validation samples, but dataset {name!r} has {n} training samples; "
            f"it must leave at least one sample for each of validation and training (1 .. {n - 1}, or a fraction)"
        )
    return count


def _carved_test_count(name: str, n: int) -> int:
    count = round(CARVED_TEST_FRACTION * n)
    if not 1 <= count <= n - 2:
        raise DataError(f"dataset {name!r} has {n} samples and no test split: too few to carve a test split from (need at least 3)")
    return count


# --- tensors ------------------------------------------------------------------------------------------


def as_float(x: np.ndarray, index: np.ndarray | None) -> torch.Tensor:
    """float32 rows ``index`` of ``x`` (all when None), a fresh copy (normalized in place later).

    Indexing first keeps the copy of 8-bit data small; uint8 is scaled to [0, 1] (see RawData).
    """
    part = x[index] if index is not None else np.array(x, copy=True)
    tensor = torch.from_numpy(np.ascontiguousarray(part))
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    return tensor.to(torch.float32)


def _labels(y: np.ndarray, index: np.ndarray | None) -> torch.Tensor:
    part = y[index] if index is not None else y
    return torch.from_numpy(np.array(part, dtype=np.int64, copy=True))


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of ``x`` of shape (N, C, ...).

    A constant channel has std 0; it gets std 1 so normalization only centres it.
    """
    # float32 is enough: torch reduces with Welford/cascade sums (checked against float64 to 1e-6),
    # and a float64 copy of Fashion-MNIST would cost more time than the whole rest of loading.
    std, mean = torch.std_mean(x, dim=[0, *range(2, x.dim())], correction=0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / std`` per channel, in place (the statistics of the training part)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return x.sub_(mean.view(shape)).div_(std.view(shape))


# --- checking what a loader returned ------------------------------------------------------------------


def _check_raw(name: str, raw: Any) -> None:
    """A loader's output must be consistent; a user's loader gets told exactly what is not."""
    who = f"the loader of dataset {name!r}"
    if not isinstance(raw, RawData):
        raise DataError(f"{who} must return distil.data.RawData (arrays), distil.data.RawText (sentences) or distil.data.RawTagged (tagged words), got {type(raw).__name__}")
    shape = tuple(raw.input_shape)
    if not shape or not all(isinstance(d, int | np.integer) and d > 0 for d in shape):
        raise DataError(f"{who} returned input_shape={raw.input_shape!r}; expected a tuple of positive ints, e.g. (1, 28, 28)")
    if len(raw.class_names) < 1 or not all(isinstance(c, str) for c in raw.class_names):
        raise DataError(f"{who} returned class_names={raw.class_names!r}; expected a non-empty tuple of strings")
    if (raw.test_x is None) != (raw.test_y is None):
        raise DataError(f"{who} returned only one of test_x and test_y; give both or neither")
    _check_arrays(who, "train", raw.train_x, raw.train_y, shape, len(raw.class_names))
    if raw.test_x is not None:
        _check_arrays(who, "test", raw.test_x, raw.test_y, shape, len(raw.class_names))
    _check_paired(who, raw)


def _check_paired(who: str, raw: RawData) -> None:
    """The teacher's inputs of paired data: one per sample of each split, all of one numeric shape."""
    if raw.train_x_teacher is None:
        if raw.test_x_teacher is not None:
            raise DataError(f"{who} returned test_x_teacher but no train_x_teacher; paired data need the teacher's inputs of every split")
        return
    if raw.test_x is not None and raw.test_x_teacher is None:
        raise DataError(f"{who} returned train_x_teacher and a test split but no test_x_teacher; the teacher needs its input of every test sample too")
    if raw.test_x is None and raw.test_x_teacher is not None:
        raise DataError(f"{who} returned test_x_teacher but no test_x; give both or neither")
    for split, x, x_teacher in (("train", raw.train_x, raw.train_x_teacher), ("test", raw.test_x, raw.test_x_teacher)):
        if x_teacher is None:
            continue
        field = f"{split}_x_teacher"
        if not isinstance(x_teacher, np.ndarray) or x_teacher.dtype.kind not in "biuf" or x_teacher.ndim < 2:
            raise DataError(f"{who}: {field} must be a numeric numpy array of shape (N, ...), got {type(x_teacher).__name__} {getattr(x_teacher, 'shape', '')}")
        if len(x_teacher) != len(x):
            raise DataError(
                f"{who}: {field} has {len(x_teacher)} samples but {split}_x has {len(x)}; paired inputs need one teacher input "
                f"per sample (row i of {field} is the teacher's view of row i of {split}_x)"
            )
        if x_teacher.dtype.kind == "f" and not np.isfinite(x_teacher).all():
            raise DataError(f"{who}: {field} contains NaN or infinite values")
    if raw.test_x_teacher is not None and raw.test_x_teacher.shape[1:] != raw.train_x_teacher.shape[1:]:
        raise DataError(f"{who}: test_x_teacher has samples of shape {raw.test_x_teacher.shape[1:]} but train_x_teacher has {raw.train_x_teacher.shape[1:]}; they must match")


def _check_arrays(who: str, split: str, x: Any, y: Any, shape: tuple[int, ...], classes: int) -> None:
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise DataError(f"{who}: {split}_x must be a numeric numpy array, got {type(x).__name__} {getattr(x, 'dtype', '')}")
    if x.shape[1:] != shape or len(x) == 0:
        raise DataError(f"{who}: {split}_x has shape {x.shape}; expected (N, {', '.join(map(str, shape))}) with N > 0")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{who}: {split}_x contains NaN or infinite values")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
        raise DataError(f"{who}: {split}_y must be a numpy array of integer labels, got {type(y).__name__} {getattr(y, 'dtype', '')}")
    if y.shape != (len(x),):
        raise DataError(f"{who}: {split}_y has shape {y.shape}; expected ({len(x)},), one label per row of {split}_x")
    bad = np.unique(y[(y < 0) | (y >= classes)])
    if bad.size:
        raise DataError(f"{who}: {split}_y has labels {bad[:10].tolist()} outside 0..{classes - 1} ({classes} class names)")
