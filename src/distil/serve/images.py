"""Uploaded images and JSON arrays → one normalized model input, as in training.

An image is decoded with Pillow, converted to grayscale (1 channel) or RGB (3), resized to the
model's H×W (bilinear, like the ``folder`` dataset), scaled to [0, 1] and normalized with the
training split's per-channel mean/std (``summary.json``'s ``data``). A JSON array is raw-scale
values of one sample (``input_shape``, or H×W for one channel) or a batch (``N × input_shape``), normalized the same way.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from distil.serve.protocol import InferError

MODES = {1: "L", 3: "RGB"}
#: Decoded pixels allowed per upload: Pillow's decompression-bomb guard, made an error.
MAX_PIXELS = 16_000_000


def normalize(raw: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(raw - mean) / std`` per channel (axis 1 of a batch); unchanged when the model has no statistics."""
    if not mean or not std:
        return raw.astype(np.float32)
    shape = (1, -1) + (1,) * (raw.ndim - 2)
    return ((raw - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(std, np.float32).reshape(shape)).astype(np.float32)


def image_to_raw(data: bytes, input_shape: tuple[int, ...]) -> np.ndarray:
    """A PNG/JPEG (any format Pillow reads) as a raw-scale batch of one, ``(1, C, H, W)`` in [0, 1]."""
    from PIL import Image

    if len(input_shape) != 3 or input_shape[0] not in MODES:
        raise InferError(f"this model takes inputs of shape {list(input_shape)}, not images; send a JSON array")
    channels, height, width = input_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise InferError(f"the image has {image.width}×{image.height} pixels; at most {MAX_PIXELS} are accepted", 413)
                converted = image.convert(MODES[channels])
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(converted, dtype=np.float32) / 255.0
    except InferError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InferError(f"the upload is not an image Pillow can read (PNG or JPEG expected): {err}", 415) from None
    return pixels.reshape(height, width, channels).transpose(2, 0, 1)[None]


def array_to_raw(values: object, input_shape: tuple[int, ...], max_batch: int) -> np.ndarray:
    """A JSON array (one sample or a batch of ``input_shape``) as a raw-scale float32 batch."""
    try:
        array = np.asarray(values)
    except ValueError:
        raise InferError("the JSON array is ragged (rows of different lengths)") from None
    if array.dtype.kind not in "iuf":
        raise InferError(f"the JSON array must hold numbers, got {array.dtype.kind!r} values")
    if array.shape == input_shape:
        array = array[None]
    elif input_shape[0] == 1 and array.shape[-(len(input_shape) - 1) :] == input_shape[1:]:
        array = array[None, None] if array.ndim == len(input_shape) - 1 else array[:, None]  # H×W or N×H×W: one channel
    if array.shape[1:] != input_shape or not 1 <= len(array) <= max_batch:
        raise InferError(
            f"the JSON array has shape {list(array.shape)}; expected {list(input_shape)} or [N, {', '.join(map(str, input_shape))}] with N <= {max_batch}"
        )
    return array.astype(np.float32)
