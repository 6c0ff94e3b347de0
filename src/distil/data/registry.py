"""The dataset registry: loaders by name, and loaders imported by ``"package.module:loader"``.

A loader is ``loader(path: Path | None, **options) -> RawData | RawText``. Its keyword parameters after
``path`` are the options it accepts; :func:`check_options` compares what a user passed with them
before the loader runs, so a typo is reported with the accepted names instead of a TypeError.

There are two ways to add a dataset, and :func:`lookup` (so every caller: ``load_dataset``, a
config's ``data.name``, a transfer set) takes both:

* from Python, the :func:`register_dataset` decorator: the loader gets a short name and a line in
  ``distil datasets``, once its module has been imported;
* from YAML, with no registration, a name with a ``':'``: ``data: {name: "mypkg.sources:load_mydata"}``
  imports ``load_mydata`` from ``mypkg.sources`` (which must be on ``sys.path``) when it is looked
  up. It is checked like a registered loader and used exactly like one.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from distil.data.raw import RawData, RawText
from distil.errors import DataError
from distil.imports import import_object

Loader = Callable[..., RawData | RawText]
L = TypeVar("L", bound=Loader)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader and the one line ``distil datasets`` shows."""

    loader: Loader
    description: str


#: name -> entry. Filled at import time by :func:`register_dataset` (built-ins in ``distil.data.sources``).
DATASETS: dict[str, DatasetEntry] = {}

#: Keywords of load_dataset itself: a loader option with one of these names could never be passed.
RESERVED_OPTIONS = ("name", "path", "val_size", "seed", "tokenizer", "max_length")

#: The protocol every loader follows, as error messages show it.
LOADER_FORM = "loader(path: Path | None, **options) -> distil.data.RawData | distil.data.RawText"


def register_dataset(name: str, description: str) -> Callable[[L], L]:
    """Decorator: make ``loader`` loadable as ``load_dataset(name, ...)``.

    ``loader(path, **options)`` gets ``path`` as a :class:`~pathlib.Path` (or ``None`` when the user
    gave none) and the user's options as keyword arguments, and returns :class:`RawData` (arrays) or
    :class:`RawText` (sentences).
    Registering a different function under a taken name is an error; registering the same one again
    (a re-imported module) is not.
    """
    if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() or c == ":" for c in name):
        raise DataError(
            f"a dataset name must be a non-empty string without spaces or ':' (':' marks 'package.module:loader'), got {name!r}"
        )

    def add(loader: L) -> L:
        _check_loader(name, loader, f"register_dataset({name!r}) must decorate")
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
    """The entry of dataset ``name``: a registered name, or ``"package.module:loader"`` imported now.

    An unknown name raises DataError listing the known ones; a spec that does not import, or does
    not name a loader, raises DataError saying what is missing and what was expected.
    """
    if isinstance(name, str) and ":" in name:
        return _imported(name)
    if not isinstance(name, str) or name not in DATASETS:
        known = sorted(DATASETS)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(
            f"unknown dataset {name!r}{hint}; known datasets: {', '.join(known)}; or name your own loader as 'package.module:loader'"
        )
    return DATASETS[name]


def _imported(spec: str) -> DatasetEntry:
    """The entry of the loader ``spec`` names, imported (``sys.modules`` caches it) but not registered.

    Not registered: a config naming a loader must not change what ``distil datasets`` lists or
    what later names mean in the same process.
    """
    loader = import_object(spec, "dataset", DataError, attr="loader", example="mypkg.sources:load_mydata")
    _check_loader(spec, loader, f"dataset {spec!r} must name")
    return DatasetEntry(loader, f"imported from {spec}")


def _check_loader(name: str, loader: Any, must: str) -> None:
    """What a loader must be before it is used, registered or imported: callable with ``path`` first.

    ``must`` starts the message (who requires it). An option named like one of load_dataset's own
    arguments is refused here too: it could never reach the loader.
    """
    if not callable(loader):
        raise DataError(f"{must} a callable {LOADER_FORM}, got {type(loader).__qualname__} {loader!r}")
    if not _takes_path(loader):
        raise DataError(f"{must} a callable {LOADER_FORM}, but {qualified_name(loader)} takes no positional path argument")
    clashes = [o for o in accepted_options(loader) or () if o in RESERVED_OPTIONS]
    if clashes:
        raise DataError(
            f"loader {qualified_name(loader)} of dataset {name!r} has options {clashes} named like "
            f"load_dataset's own arguments {RESERVED_OPTIONS}; rename them"
        )


def _takes_path(loader: Loader) -> bool:
    """Whether ``loader`` can be called as ``loader(path)``: a positional first parameter (or ``*args``)."""
    try:
        parameters = list(inspect.signature(loader).parameters.values())
    except (TypeError, ValueError):  # no inspectable signature: cannot check, trust it
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return bool(parameters) and parameters[0].kind in positional


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
