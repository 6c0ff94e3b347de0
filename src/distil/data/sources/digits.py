"""scikit-learn's digits: 1797 8×8 grayscale handwritten digits (values 0..16), no test split.

``size``: the images upsampled (bilinear) to ``size``×``size``, e.g. 28 to match a model pre-trained on
28×28 images (BiT fine-tunes small images at a higher resolution than their own: benchmarks/bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from distil.data.raw import RawData
from distil.data.registry import no_path, register_dataset
from distil.errors import DataError

CLASS_NAMES = tuple(str(d) for d in range(10))
#: The images' values are counts of set pixels in 4×4 blocks: 0..16.
MAX_VALUE = 16.0


@register_dataset("digits", "scikit-learn digits: 8x8 grayscale, 10 classes, 1797 samples (a fixed 20% is the test split)")
def load_digits(path: Path | None, *, size: int | None = None) -> RawData:
    """The digits bundled with scikit-learn, scaled to [0, 1] (upsampled to ``size``×``size`` if given); load_dataset carves the test split."""
    no_path("digits", path, "it is bundled with scikit-learn")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DataError(f"dataset 'digits': option size must be a positive integer (the side of the upsampled images), got {size!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / MAX_VALUE)[:, None]
    if size is not None and size != images.shape[-1]:
        images = F.interpolate(torch.from_numpy(images), size=(size, size), mode="bilinear", align_corners=False).numpy()
    return RawData(
        train_x=images,
        train_y=bunch.target.astype(np.int64),
        test_x=None,
        test_y=None,
        class_names=CLASS_NAMES,
        input_shape=tuple(images.shape[1:]),
        source="scikit-learn load_digits",
    )
