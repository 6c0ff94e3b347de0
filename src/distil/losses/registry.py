"""Losses registered by name, so a YAML config can say ``loss: KD`` and users can add their own."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from distil.losses.base import Loss

L = TypeVar("L", bound=type[Loss])

LOSSES: dict[str, type[Loss]] = {}


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator: make ``cls`` buildable as ``build_loss(name, **params)``."""

    def add(cls: L) -> L:
        if name in LOSSES and LOSSES[name] is not cls:
            raise ValueError(f"loss name {name!r} is already registered to {LOSSES[name].__qualname__}")
        cls.name = name.lower()
        LOSSES[name] = cls
        return cls

    return add


def build_loss(name: str, **params: Any) -> Loss:
    """Build a registered loss; ``KeyError``/``TypeError`` carry a message that lists what exists."""
    try:
        cls = LOSSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, LOSSES, n=3, cutoff=0.3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"unknown loss {name!r}{hint}; known losses: {', '.join(sorted(LOSSES))}") from None
    try:
        return cls(**params)
    except TypeError as err:
        raise TypeError(f"loss {name}: {err}") from None


def list_losses() -> dict[str, str]:
    """Name → first line of the docstring."""
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in sorted(LOSSES.items())}
