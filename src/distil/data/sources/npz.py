"""A NumPy ``.npz`` file with arrays ``x`` and ``y``, and optionally ``x_test`` and ``y_test``.

Paired data (cross-modal distillation): ``x_teacher`` (and ``x_test_teacher`` with a test split) hold
the teacher's input of each sample, row for row with ``x`` (``x_test``), in a shape of their own; ``x``
is then what the student sees.

``x`` is ``(N, L)`` signals, ``(N, H, W)`` grayscale images or ``(N, C, H, W)`` images (a channel
axis of 1 is added to the first two). ``uint8`` values are pixels and are scaled by 1/255; any other
numeric dtype is taken as is. ``y`` holds integer labels ``0 .. K-1``; the class names are
``"0" .. "K-1"``. The file is read with ``allow_pickle=False``: an npz never runs code when loaded.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from distil.data.raw import RawData
from distil.data.registry import register_dataset, required_path
from distil.errors import DataError

WHAT = "a .npz file with arrays x and y (and optionally x_test and y_test; for paired data x_teacher and x_test_teacher)"


@register_dataset("npz", "a .npz file with arrays x, y and optionally x_test, y_test; paired: x_teacher, x_test_teacher (uint8 x is scaled by 1/255)")
def load_npz(path: Path | None) -> RawData:
    """Read ``x``/``y`` (and ``x_test``/``y_test`` when present) from the npz file at ``path``."""
    file = required_path("npz", path, WHAT)
    arrays = _read(file)
    x, y = _inputs(file, "x", arrays["x"]), _labels(file, "y", arrays["y"], len(arrays["x"]))
    test_x = test_y = None
    if "x_test" in arrays:
        test_x = _inputs(file, "x_test", arrays["x_test"])
        test_y = _labels(file, "y_test", arrays["y_test"], len(arrays["x_test"]))
        if test_x.shape[1:] != x.shape[1:]:
            shapes = f"x_test has samples of shape {arrays['x_test'].shape[1:]} but x has {arrays['x'].shape[1:]}"
            raise DataError(f"{file}: {shapes}; they must match")
    x_teacher, test_x_teacher = _teacher_inputs(file, arrays)
    all_labels = y if test_y is None else np.concatenate([y, test_y])
    classes = int(all_labels.max()) + 1
    missing = sorted(set(range(classes)) - set(np.unique(all_labels).tolist()))
    if missing:
        raise DataError(
            f"{file}: labels must be 0..K-1 with every class present; up to the largest label {classes - 1}, "
            f"classes {missing[:10]} have no sample (labels starting at 1?)"
        )
    return RawData(
        train_x=x,
        train_y=y,
        test_x=test_x,
        test_y=test_y,
        class_names=tuple(str(k) for k in range(classes)),
        input_shape=tuple(int(d) for d in x.shape[1:]),
        source=str(file),
        train_x_teacher=x_teacher,
        test_x_teacher=test_x_teacher,
    )


def _teacher_inputs(file: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``x_teacher`` and ``x_test_teacher`` (paired data), each with one row per row of its ``x``; DataError naming the array otherwise."""
    if "x_teacher" not in arrays:
        if "x_test_teacher" in arrays:
            raise DataError(f"{file}: has x_test_teacher but no x_teacher; paired data need the teacher's input of every sample")
        return None, None
    if "x_test" in arrays and "x_test_teacher" not in arrays:
        raise DataError(f"{file}: has x_teacher and x_test but no x_test_teacher; the teacher needs its input of every test sample too")
    if "x_test" not in arrays and "x_test_teacher" in arrays:
        raise DataError(f"{file}: has x_test_teacher but no x_test; give both or neither")
    out = []
    for key, student in (("x_teacher", "x"), ("x_test_teacher", "x_test")):
        if key not in arrays:
            out.append(None)
            continue
        teacher = _inputs(file, key, arrays[key])
        if len(teacher) != len(arrays[student]):
            raise DataError(
                f"{file}: array {key!r} has {len(teacher)} samples but {student!r} has {len(arrays[student])}; paired inputs need "
                f"one teacher input per sample (row i of {key} is the teacher's view of row i of {student})"
            )
        out.append(teacher)
    if out[1] is not None and out[1].shape[1:] != out[0].shape[1:]:  # type: ignore[union-attr]
        raise DataError(f"{file}: x_test_teacher has samples of shape {out[1].shape[1:]} but x_teacher has {out[0].shape[1:]}; they must match")  # type: ignore[union-attr]
    return out[0], out[1]


def _read(file: Path) -> dict[str, np.ndarray]:
    """The arrays x, y (and x_test, y_test if present) of ``file``; DataError naming what is missing."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DataError(f"{file}: is a single .npy array, expected {WHAT}")
            keys = sorted(archive.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                absent = " and ".join(repr(k) for k in missing)
                raise DataError(f"{file}: missing array {absent}; the file has: {', '.join(keys) or '(no arrays)'}; expected {WHAT}")
            if ("x_test" in keys) != ("y_test" in keys):
                raise DataError(f"{file}: has only one of x_test and y_test (arrays present: {', '.join(keys)}); give both or neither")
            return {k: _array(file, archive, k) for k in ("x", "y", "x_test", "y_test", "x_teacher", "x_test_teacher") if k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{file}: cannot be read as .npz ({error}); expected {WHAT}") from None


def _array(file: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:  # an object array needs pickle, which is refused
        raise DataError(f"{file}: array {key!r} cannot be loaded without unpickling ({error}); store numeric arrays") from None


def _inputs(file: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{file}: array {key!r} has dtype {x.dtype}; expected a numeric (int, uint8 or float) array")
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{file}: array {key!r} has shape {x.shape}; expected at least one sample of shape L, H×W or C×H×W")
    if x.ndim == 2 or x.ndim == 3:
        return x[:, None]  # one channel: (N, 1, L) or (N, 1, H, W)
    if x.ndim == 4:
        return x
    raise DataError(f"{file}: array {key!r} has shape {x.shape}; expected (N, L), (N, H, W) or (N, C, H, W)")


def _labels(file: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise DataError(f"{file}: array {key!r} has dtype {y.dtype}; labels must be integers 0..K-1 (e.g. y.astype(np.int64))")
    if y.shape != (n,):
        raise DataError(f"{file}: array {key!r} has shape {y.shape}; expected ({n},), one label per sample of the inputs")
    if n and y.min() < 0:
        raise DataError(f"{file}: array {key!r} has negative labels ({int(y.min())}); labels must be 0..K-1")
    return y
