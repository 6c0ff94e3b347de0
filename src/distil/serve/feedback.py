"""Feedback capture: inputs the server sees become a transfer set for the next distillation.

Off by default (``distil serve --feedback DIR``). Inputs are written to ``DIR`` as ``.npz`` shards
(``shard-000000.npz``, ...) of ``x`` — the inputs *before* normalization (raw scale, float32,
``(N, *input_shape)``) — and ``y`` — the served model's predicted class, a pseudo-label — next to
``transfer.json`` (class names, input shape, what labelled ``y``). The ``transfer`` dataset reads
the folder (``data: {name: transfer, path: DIR}``), so ``distil distill`` can distil again on what
was served: deploy, collect, distil again.

Writing stops at ``max_samples`` samples or ``max_bytes`` of ``x`` in the folder (shards already
there count), and samples wait in memory only up to one shard, so memory and disk stay bounded.
Each shard is written atomically: a reader never sees half a shard.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np

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
            "labels": f"predictions of the served {labelled_by}",
            "x": "raw scale, before normalization",
        }
        atomic_write(self.folder / META, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))
        self._shards = sorted(self.folder.glob(SHARD_GLOB))
        self.written = sum(_count(p) for p in self._shards)
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return sum(len(x) for x in self._x)

    @property
    def full(self) -> bool:
        return self.written + self.pending >= self.max_samples

    def add(self, x: np.ndarray, labels: np.ndarray) -> int:
        """Queue the normalized batch ``x`` with its predicted ``labels``; returns how many were kept."""
        with self._lock:
            room = self.max_samples - self.written - self.pending
            if room <= 0:
                return 0
            x, labels = x[:room], labels[:room]
            raw = x * self._std + self._mean if self._mean is not None and self._std is not None else x
            self._x.append(raw.astype(np.float32))
            self._y.append(labels.astype(np.int64))
            if self.pending >= self.shard_size or self.full:
                self._flush()
            return len(x)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if not self._x:
            return
        x, y = np.concatenate(self._x), np.concatenate(self._y)
        self._x, self._y = [], []
        path = self.folder / f"shard-{len(self._shards):06d}.npz"
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=y)
        atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
        self._shards.append(path)
        self.written += len(x)


def _count(shard: Path) -> int:
    with np.load(shard, allow_pickle=False) as archive:
        return len(archive["y"])
