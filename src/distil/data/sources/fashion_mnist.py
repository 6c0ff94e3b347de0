"""Fashion-MNIST: 28×28 grayscale clothing images, 10 classes, 60 000 train / 10 000 test.

Where the files are looked for, in order (the first directory holding all four files wins):

1. ``path`` when given, and only there (a wrong path is an error, not a reason to look elsewhere);
2. ``$DISTIL_DATA`` and ``$DISTIL_DATA/fashion-mnist``;
3. ``~/.cache/distil/fashion-mnist``;
4. ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install dataset-fashion-mnist``).

If none has them, they are downloaded into the cache directory. Each file may be gzipped or not;
its md5 is checked on the decompressed IDX bytes, because repackaged ``.gz`` files (Debian's) have
different gzip headers around identical data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from distil.data.download import fetch
from distil.data.idx import check_md5, gunzip, parse_idx, read_maybe_gzipped
from distil.data.raw import RawData
from distil.data.registry import register_dataset
from distil.errors import DataError

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IMAGE_SHAPE = (28, 28)
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian), or put the four files "
    "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, "
    "each with or without .gz) in a directory and set DISTIL_DATA to it or pass it as the path"
)


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name without ``.gz`` and the md5 of its decompressed bytes."""

    name: str
    md5: str
    ndim: int


TRAIN_IMAGES = IdxFile("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a", 3)
TRAIN_LABELS = IdxFile("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9", 1)
TEST_IMAGES = IdxFile("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a", 3)
TEST_LABELS = IdxFile("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965", 1)
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def cache_dir() -> Path:
    """Where downloads go: ``~/.cache/distil/fashion-mnist``."""
    return Path.home() / ".cache" / "distil" / "fashion-mnist"


def search_dirs() -> list[Path]:
    """The directories searched when no path is given, in order."""
    dirs = []
    env = os.environ.get("DISTIL_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / "fashion-mnist"]
    return [*dirs, cache_dir(), SYSTEM_DIR]


def find_files(directory: Path) -> dict[IdxFile, Path]:
    """The files of :data:`FILES` present in ``directory`` (uncompressed preferred: faster to read)."""
    found = {}
    for spec in FILES:
        for candidate in (directory / spec.name, directory / f"{spec.name}.gz"):
            if candidate.is_file():
                found[spec] = candidate
                break
    return found


@register_dataset("fashion_mnist", "Fashion-MNIST: 28x28 grayscale clothing, 10 classes, 60k train / 10k test (local copy, else download)")
def load_fashion_mnist(path: Path | None) -> RawData:
    """Read the four IDX files from ``path`` or the first directory that has them (see module doc)."""
    if path is not None:
        found = find_files(path)
        if len(found) < len(FILES):
            raise DataError(_missing_message(path, found))
        return _read(found, path)
    looked = search_dirs()
    for directory in looked:
        found = find_files(directory)
        if len(found) == len(FILES):
            return _read(found, directory)
    return _read(_download(cache_dir(), looked), cache_dir())


def _read(found: dict[IdxFile, Path], directory: Path) -> RawData:
    arrays = {}
    for spec, file in found.items():
        data = read_maybe_gzipped(file)
        fix = f"Delete {file} and load again to download a fresh copy, or reinstall dataset-fashion-mnist."
        check_md5(data, spec.md5, str(file), fix=fix)
        arrays[spec] = parse_idx(data, str(file), ndim=spec.ndim)
    for images, labels in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        # md5 already pins the contents; these checks guard against edits of the table above.
        if arrays[images].shape[1:] != IMAGE_SHAPE or len(arrays[images]) != len(arrays[labels]):
            raise DataError(
                f"{found[images]}: images of shape {arrays[images].shape} do not match {len(arrays[labels])} labels in {found[labels]}"
            )
    return RawData(
        train_x=arrays[TRAIN_IMAGES][:, None],  # uint8: scaled to [0, 1] by load_dataset
        train_y=arrays[TRAIN_LABELS],
        test_x=arrays[TEST_IMAGES][:, None],
        test_y=arrays[TEST_LABELS],
        class_names=CLASS_NAMES,
        input_shape=(1, *IMAGE_SHAPE),
        source=str(directory),
    )


def _download(directory: Path, looked: list[Path]) -> dict[IdxFile, Path]:
    """Download the files missing from ``directory``; DataError saying where we looked on failure."""
    found = find_files(directory)
    for spec in FILES:
        if spec in found:
            continue
        url = f"{BASE_URL}{spec.name}.gz"
        dest = directory / f"{spec.name}.gz"

        def verify(contents: bytes, url: str = url, spec: IdxFile = spec) -> None:
            check_md5(gunzip(contents, url), spec.md5, url, fix="The download is damaged or the server's copy changed; try again later.")

        try:
            fetch(url, dest, verify)
        except OSError as error:
            places = "\n".join(f"  {d}" for d in looked)
            raise DataError(
                f"Fashion-MNIST not found; looked in:\n{places}\nand downloading {url} into {directory} failed ({_reason(error)}).\n"
                f"To fix: {INSTALL_HINT}."
            ) from None
        found[spec] = dest
    return found


def _missing_message(path: Path, found: dict[IdxFile, Path]) -> str:
    if not path.is_dir():
        state = "is a file" if path.exists() else "does not exist"
        return f"Fashion-MNIST path {path} {state}; expected a directory with the four IDX files. To fix: {INSTALL_HINT}."
    missing = [f"{spec.name}[.gz]" for spec in FILES if spec not in found]
    present = sorted(p.name for p in path.iterdir())
    return (
        f"Fashion-MNIST files missing in {path} (the path given, so no other place is searched): {', '.join(missing)}; "
        f"the directory contains: {', '.join(present[:20]) or '(nothing)'}{' ...' if len(present) > 20 else ''}. "
        f"To fix: {INSTALL_HINT}, or leave the path unset to search $DISTIL_DATA, {cache_dir()} and {SYSTEM_DIR}."
    )


def _reason(error: OSError) -> str:
    return str(getattr(error, "reason", None) or error.strerror or error)
