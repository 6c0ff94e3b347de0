"""scikit-learn's digits: 1797 8×8 grayscale handwritten digits (values 0..16), no test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distil.data.raw import RawData
from distil.data.registry import no_path, register_dataset

CLASS_NAMES = tuple(str(d) for d in range(10))
#: The images' values are counts of set pixels in 4×4 blocks: 0..16.
MAX_VALUE = 16.0


@register_dataset("digits", "scikit-learn digits: 8x8 grayscale, 10 classes, 1797 samples (a fixed 20% is the test split)")
def load_digits(path: Path | None) -> RawData:
    """The digits bundled with scikit-learn, scaled to [0, 1]; load_dataset carves the test split."""
    no_path("digits", path, "it is bundled with scikit-learn")
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    return RawData(
        train_x=(bunch.images.astype(np.float32) / MAX_VALUE)[:, None],
        train_y=bunch.target.astype(np.int64),
        test_x=None,
        test_y=None,
        class_names=CLASS_NAMES,
        input_shape=(1, *bunch.images.shape[1:]),
        source="scikit-learn load_digits",
    )
