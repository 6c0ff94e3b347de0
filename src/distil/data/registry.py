"""The dataset registry: loaders by name, filled by the :func:`register_dataset` decorator.

A loader is ``loader(path: Path | None, **options) -> RawData``. Its keyword parameters after
``path`` are the options it accepts; :func:`check_options` compares what a user passed with them
before the loader runs, so a typo is reported with the accepted names instead of a TypeError.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from distil.data.raw import RawData
from distil.errors import DataError

Loader = Callable[..., RawData]
L = TypeVar("L", bound=Loader)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader and the one line ``distil datasets`` shows."""

    loader: Loader
    description: str


#: name -> entry. Filled at import time by :func:`register_dataset` (built-ins in ``distil.data.sources``).
DATASETS: dict[str, DatasetEntry] = {}

#: Keywords of load_dataset itself: a loader option with one of these names could never be passed.
RESERVED_OPTIONS = ("name", "path", "val_size", "seed")


def register_dataset(name: str, description: str) -> Callable[[L], L]:
    """Decorator: make ``loader`` loadable as ``load_dataset(name, ...)``.

    ``loader(path, **options)`` gets ``path`` as a :class:`~pathlib.Path` (or ``None`` when the user
    gave none) and the user's options as keyword arguments, and returns :class:`RawData`.
    Registering a different function under a taken name is an error; registering the same one again
    (a re-imported module) is not.
    """
    if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() for c in name):
        raise DataError(f"a dataset name must be a non-empty string without spaces, got {name!r}")

    def add(loader: L) -> L:
        if not callable(loader):
            raise DataError(f"register_dataset({name!r}) must decorate a callable, got {loader!r}")
        clashes = [o for o in accepted_options(loader) or () if o in RESERVED_OPTIONS]
        if clashes:
            raise DataError(
                f"loader {qualified_name(loader)} of dataset {name!r} has options {clashes} named like "
                f"load_dataset's own arguments {RESERVED_OPTIONS}; rename them"
            )
        existing = DATASETS.get(name)
        if existing is not None and qualified_name(existing.loader) != qualified_name(loader):
            raise DataError(f"dataset name {name!r} is already registered to {qualified_name(existing.loader)}; choose another name")
        DATASETS[name] = DatasetEntry(loader, description)
        return loader

    return add


def list_datasets() -> dict[str, str]:
    """Registered dataset names and their one-line descriptions, sorted by name."""
    return {name: DATASETS[name].description for name in sorted(DATASETS)}


def lookup(name: str) -> DatasetEntry:
    """The entry of dataset ``name``; an unknown name raises DataError listing the known ones."""
    if not isinstance(name, str) or name not in DATASETS:
        known = sorted(DATASETS)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(known)}")
    return DATASETS[name]


def accepted_options(loader: Loader) -> tuple[str, ...] | None:
    """The option names ``loader`` takes after ``path``, or ``None`` when it takes any (``**options``)."""
    try:
        parameters = list(inspect.signature(loader).parameters.values())[1:]  # the first one is path
    except (TypeError, ValueError):  # no inspectable signature (some builtins): cannot check, accept any
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


def check_options(name: str, loader: Loader, options: Mapping[str, Any]) -> None:
    """Raise DataError naming each option ``loader`` does not accept, and the ones it does."""
    accepted = accepted_options(loader)
    if accepted is None:
        return
    unknown = [key for key in options if key not in accepted]
    if not unknown:
        return
    what = ", ".join(repr(k) for k in unknown)
    hints = [f"{k!r} -> {close[0]!r}" for k in unknown if (close := difflib.get_close_matches(k, accepted, n=1))]
    hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
    takes = f"it accepts: {', '.join(accepted)}" if accepted else "it accepts no options"
    raise DataError(f"dataset {name!r} has no option {what}{hint}; {takes}")


def no_path(name: str, path: Path | None, why: str) -> None:
    """For loaders that read no files: a given path is a mistake worth reporting, not ignoring."""
    if path is not None:
        raise DataError(f"dataset {name!r} takes no path ({why}), but got path={str(path)!r}; remove data.path")


def required_path(name: str, path: Path | None, what: str) -> Path:
    """For loaders that need a path: ``path`` as given, or DataError saying what it must point to."""
    if path is None:
        raise DataError(f"dataset {name!r} needs a path (data.path in a config) to {what}")
    if not path.exists():
        raise DataError(f"dataset {name!r}: {path} does not exist; expected {what}")
    return path


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a function, to say which loader is meant."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
