"""Reading IDX files (the MNIST family's format) with numpy, and checking their integrity.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from distil.errors import DataError

#: IDX type code -> numpy dtype (multi-byte types are big-endian).
IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str, *, ndim: int | None = None) -> np.ndarray:
    """The array stored in the IDX bytes ``data`` (a read-only view); ``name`` is used in errors.

    Raises DataError when the magic number, the dimensions (``ndim`` when given) or the length of
    ``data`` do not match the format.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(
            f"{name}: not an IDX file: magic number {data[:4].hex() or '(empty)'}, expected 0000TTDD "
            f"with type TT in {{{', '.join(f'{t:02x}' for t in IDX_TYPES)}}}"
        )
    dtype, dims_count = IDX_TYPES[data[2]], data[3]
    if ndim is not None and dims_count != ndim:
        raise DataError(f"{name}: IDX file has {dims_count} dimension(s), expected {ndim}")
    header = 4 + 4 * dims_count
    if len(data) < header:
        raise DataError(f"{name}: IDX header cut short: {len(data)} bytes, the {dims_count} dimensions need {header}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims_count, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{name}: IDX file of shape {dims} should be {expected} bytes, but it is {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def gunzip(data: bytes, name: str) -> bytes:
    """The decompressed contents of gzip bytes ``data``; DataError (naming ``name``) if they are not valid."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; a cut file is an EOFError
        raise DataError(
            f"{name}: not a valid gzip file ({error or type(error).__name__}), so its md5 cannot be checked; "
            "it is corrupt or incomplete: delete it and download it again"
        ) from None


def check_md5(data: bytes, expected: str, name: str, fix: str) -> None:
    """Raise DataError when the md5 of ``data`` is not ``expected``; ``fix`` says what to do about it."""
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        raise DataError(f"{name}: md5 mismatch: expected {expected}, got {actual}; the file is corrupt or not the original. {fix}")


def read_maybe_gzipped(file: Path) -> bytes:
    """The bytes of ``file``, decompressed when its name ends in ``.gz``."""
    try:
        data = file.read_bytes()
    except OSError as error:
        raise DataError(f"{file}: cannot be read ({error.strerror or error})") from None
    return gunzip(data, str(file)) if file.suffix == ".gz" else data
