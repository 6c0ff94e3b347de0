"""MNIST-1D: 1-D signals of length 40 made from 10 digit templates, generated offline.

The ``mnist1d`` package generates the data from a seed; it comes standardised (not in [0, 1]) and
with its own train/test split (80/20). Its generator reseeds numpy's and Python's global random
number generators, so their states are saved and restored around it: loading data must not change
what the caller's random numbers will be.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from distil.data.raw import RawData
from distil.data.registry import no_path, register_dataset
from distil.errors import DataError

CLASS_NAMES = tuple(str(d) for d in range(10))


@contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Restore numpy's and Python's global random states on exit, whatever happened inside."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


# The option is `generation_seed`, not `seed`: load_dataset's own `seed` chooses the validation split.
@register_dataset("mnist1d", "MNIST-1D: 1-D signals of length 40, 10 classes, generated offline (options: num_samples, generation_seed)")
def load_mnist1d(path: Path | None, *, num_samples: int | None = None, generation_seed: int | None = None) -> RawData:
    """Generate MNIST-1D; ``None`` options take the package's defaults (5000 samples, seed 42).

    ``num_samples`` is rounded down to a multiple of 10 (the package makes as many of each digit).
    """
    no_path("mnist1d", path, "it is generated")
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only when used

    args = get_dataset_args()
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 20:
            raise DataError(f"mnist1d option num_samples must be an int >= 20 (2 per class at least), got {num_samples!r}")
        args.num_samples = num_samples
    if generation_seed is not None:
        if isinstance(generation_seed, bool) or not isinstance(generation_seed, int):
            raise DataError(f"mnist1d option generation_seed must be an int, got {generation_seed!r}")
        args.seed = generation_seed
    with preserved_global_rng():
        data = make_dataset(args)
    length = data["x"].shape[-1]
    return RawData(
        train_x=data["x"].astype(np.float32)[:, None],  # (N, 1, L): one channel
        train_y=data["y"].astype(np.int64),
        test_x=data["x_test"].astype(np.float32)[:, None],
        test_y=data["y_test"].astype(np.int64),
        class_names=CLASS_NAMES,
        input_shape=(1, length),
        source=f"generated: mnist1d seed={args.seed} num_samples={args.num_samples}",
    )
