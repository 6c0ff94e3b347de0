"""A seeded subset of Fashion-MNIST's 60,000 training images (the test split whole), for budgets that
do not fit the full set: ``data: {name: "subset:fashion_mnist", options: {images: 25000}}`` with this
folder on ``PYTHONPATH`` (the validation split is then carved from these images)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from distil.data import RawData
from distil.data.sources.fashion_mnist import load_fashion_mnist


def fashion_mnist(path: Path | None, images: int = 25_000, subset_seed: int = 0) -> RawData:
    """Fashion-MNIST with ``images`` of its training images, chosen by ``subset_seed`` (the same for every run seed)."""
    raw = load_fashion_mnist(path)
    keep = np.sort(np.random.default_rng(subset_seed).permutation(len(raw.train_x))[:images])
    return replace(raw, train_x=raw.train_x[keep], train_y=raw.train_y[keep], source=f"{raw.source or path} (subset: {images} training images, seed {subset_seed})")
