"""Teacher outputs on disk: one safetensors file per (teacher, data, settings), memory-mapped on load.

A cache entry is named by a key, the sha256 of everything its content depends on — the teacher's
weights (names, dtypes, shapes and bytes) and class, the training inputs' bytes, the kind of cache and
its settings (taps; views, top-k, seed and augmentation for pre-drawn views) — so a changed teacher or
dataset never meets a stale entry: it has another key. Each entry is two files written atomically,
``KEY.safetensors`` then ``KEY.json`` (the manifest, with the data file's sha256). An entry whose
manifest is missing, whose data file's hash differs from the manifest, or whose header does not parse
is corrupt: it is reported with a warning, deleted and rebuilt, never used.

Reading maps the file (copy-on-write) and builds the tensors on the mapping, so a cache larger than
RAM pages in only what training touches. Files are never unpickled.

The directory is capped on disk (``$DISTIL_CACHE_MAX_BYTES``, default :data:`DISK_BYTES` = 20 GiB):
every use of an entry touches its manifest's modification time, and after a save the least recently
used entries (oldest manifest times) are deleted until the directory fits; the entry just written is
never deleted, even when it alone is over the cap. A deleted entry costs one teacher pass to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from distil.weights import atomic_write, file_sha256

#: Bump when the layout of an entry changes: old entries then simply stop matching.
FORMAT = 1

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


#: The default cap on the cache directory's size on disk.
DISK_BYTES = 20 * 1024**3


def default_disk_bytes() -> int:
    """``$DISTIL_CACHE_MAX_BYTES`` if set (bytes), else :data:`DISK_BYTES`."""
    env = os.environ.get("DISTIL_CACHE_MAX_BYTES")
    return int(env) if env else DISK_BYTES


def default_dir() -> Path:
    """``$DISTIL_CACHE`` if set, else ``~/.cache/distil/teacher``."""
    env = os.environ.get("DISTIL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "distil" / "teacher"


def _update(digest: Any, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        digest.update(t.view(-1).view(torch.uint8).numpy() if t.dtype != torch.bool else t.numpy().view(np.uint8))


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256()
    _update(digest, t)
    return digest.hexdigest()


Scalar = bool | int | float | str


def module_settings(model: nn.Module) -> list[str]:
    """Every module's public scalar attributes (and tuples of them), ``path.name=value``, sorted by path.

    What the weights do not say but the outputs depend on: an ensemble's ``T`` and ``combine``, a
    transformer's ``heads``, a convolution's ``stride`` and ``padding``. ``training`` is left out (a teacher
    is cached in eval mode), as are private attributes.
    """
    found = []
    for path, module in model.named_modules():
        for key, value in sorted(vars(module).items()):
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, Scalar) or (isinstance(value, tuple) and all(isinstance(v, Scalar) for v in value)):
                found.append(f"{path}.{key}={value!r}")
    return found


def model_digest(model: nn.Module) -> str:
    """sha256 of a model's class, its modules' settings (:func:`module_settings`) and its state dict
    (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for setting in module_settings(model):
        digest.update(setting.encode())
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        _update(digest, t)
    return digest.hexdigest()


def cache_key(teacher: nn.Module, x: torch.Tensor, kind: str, settings: Mapping[str, Any]) -> str:
    """The key of the entry for ``teacher`` on inputs ``x`` with cache ``kind`` and its ``settings``."""
    parts = {"format": FORMAT, "kind": kind, "teacher": model_digest(teacher), "data": tensor_digest(x), "device": x.device.type, **settings}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class TeacherStore:
    """A directory of cache entries (see the module docstring)."""

    def __init__(self, directory: str | Path | None = None, max_disk_bytes: int | None = None) -> None:
        self.dir = Path(directory) if directory is not None else default_dir()
        self.max_disk_bytes = max_disk_bytes if max_disk_bytes is not None else default_disk_bytes()

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.safetensors", self.dir / f"{key}.json"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The entry's tensors (memory-mapped), or None when it is absent or corrupt (then it is deleted)."""
        data, manifest = self.paths(key)
        if not data.exists() and not manifest.exists():
            return None
        try:
            expected = json.loads(manifest.read_text())["sha256"]
            actual = file_sha256(data)
            if actual != expected:
                raise ValueError(f"sha256 {actual[:12]}… differs from the manifest's {expected[:12]}…")
            tensors = read_mapped(data)
            os.utime(manifest)  # used now: the last to be evicted
            return tensors
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            warnings.warn(f"teacher cache {data} is corrupt or incomplete ({err}); rebuilding it", RuntimeWarning, stacklevel=2)
            self.remove(key)
            return None

    def save(self, key: str, tensors: Mapping[str, torch.Tensor], info: Mapping[str, Any] | None = None) -> Path:
        """Write the entry atomically: the data file first, then the manifest that vouches for it."""
        data, manifest = self.paths(key)
        state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        atomic_write(data, lambda tmp: save_file(state, str(tmp)))
        record = {"key": key, "sha256": file_sha256(data), "bytes": data.stat().st_size, "format": FORMAT, **(info or {})}
        atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(record, indent=1, default=str)))
        self.evict(keep=key)
        return data

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least recently used entries until the directory holds at most ``max_disk_bytes``; returns their keys."""
        entries = []
        for key in self.keys():
            data, manifest = self.paths(key)
            try:
                entries.append((manifest.stat().st_mtime, key, manifest.stat().st_size + (data.stat().st_size if data.exists() else 0)))
            except OSError:  # removed meanwhile by another process
                continue
        total = sum(size for _, _, size in entries)
        evicted = []
        for _, key, size in sorted(entries):
            if total <= self.max_disk_bytes:
                break
            if key == keep:
                continue
            self.remove(key)
            total -= size
            evicted.append(key)
        return evicted

    def remove(self, key: str) -> None:
        for path in self.paths(key):
            path.unlink(missing_ok=True)

    def keys(self) -> Iterable[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.is_dir() else []


def read_mapped(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, as views of a copy-on-write memory map of it.

    Parses the format (8-byte little-endian header length, JSON header with dtype, shape and byte
    offsets per tensor) and checks every offset against the file size, so a truncated or edited file is
    a ``ValueError``, not garbage.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: {size} bytes, too short for a safetensors file")
        (length,) = struct.unpack("<Q", f.read(8))
        if length > size - 8:
            raise ValueError(f"{path}: header of {length} bytes does not fit in a {size}-byte file")
        header = json.loads(f.read(length))
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 8 + length else None
    start = 8 + length
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * dtype.itemsize or start + end > size:
            raise ValueError(f"{path}: tensor {name!r} does not match its declared shape or lies past the end of the file")
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(mapped, dtype=dtype, count=count, offset=start + begin).view(shape)
    return out
