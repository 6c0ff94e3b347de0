"""Argument checks shared by the model factories.

Each check returns the value in the form the model wants (a tuple, an int) or raises a
:class:`~distil.errors.ModelError` that names the model, the argument, what was expected and what
was given, so a typo in a YAML config reads as one clear line rather than a shape error deep in a
forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

from distil.errors import ModelError


def image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``input_shape``, or a ModelError saying that ``model`` takes images."""
    if len(input_shape) != 3:
        raise ModelError(
            f"model {model!r} takes images with input_shape (C, H, W), got {tuple(input_shape)}; "
            "for 1-D signals (C, L) use 'cnn1d' or 'mlp'"
        )
    c, h, w = input_shape
    return c, h, w


def signal_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(C, L)`` from ``input_shape``, or a ModelError saying that ``model`` takes 1-D signals."""
    if len(input_shape) != 2:
        raise ModelError(
            f"model {model!r} takes 1-D signals with input_shape (C, L), got {tuple(input_shape)}; "
            "for images (C, H, W) use 'cnn', a resnet or 'mlp'"
        )
    c, length = input_shape
    return c, length


def positive_int(model: str, arg: str, value: Any) -> int:
    """``value`` as an int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ModelError(f"model {model!r}: {arg} must be a positive integer, got {value!r}")
    return int(value)


def positive_ints(model: str, arg: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    """``value`` (a list or tuple, as YAML or Python gives it) as a tuple of ints ≥ 1."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ModelError(f"model {model!r}: {arg} must be a list of positive integers, got {value!r}")
    if not value and not allow_empty:
        raise ModelError(f"model {model!r}: {arg} must not be empty")
    return tuple(positive_int(model, f"{arg}[{i}]", v) for i, v in enumerate(value))


def positive_float(model: str, arg: str, value: Any) -> float:
    """``value`` as a float > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ModelError(f"model {model!r}: {arg} must be a positive number, got {value!r}")
    return float(value)


def probability(model: str, arg: str, value: Any) -> float:
    """``value`` as a float in [0, 1): a dropout rate."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise ModelError(f"model {model!r}: {arg} must be a number in [0, 1), got {value!r}")
    return float(value)
