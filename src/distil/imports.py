"""``"package.module:attr.path"``: how a config names user code (a model factory, a dataset loader, ...).

:func:`import_object` is the one place such a name is resolved, so every kind of user extension
gets the same form and the same messages: a wrong form, a module that cannot be imported (and
why: missing, or raising while importing), or a missing attribute (with the closest public callables
that the module does have). The module is imported with :func:`importlib.import_module`, so it must
be importable from ``sys.path`` (an installed package, or a directory on ``PYTHONPATH``).

This module imports only :mod:`distil.errors` and the standard library, so any part of distil can
use it without an import cycle.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType
from typing import Any

from distil.errors import DistilError


def import_object(spec: str, kind: str, error: type[DistilError], *, attr: str = "object", example: str = "mypkg.module:name") -> Any:
    """The object that ``spec`` (``"package.module:attr.path"``) names, or ``error`` saying what is missing.

    ``kind`` names what the object is for ("model", "dataset", ...) and starts every message, so the
    user sees which config field is wrong; ``attr`` names the part after ``':'`` in the expected form
    (``'package.module:factory'``) and ``example`` shows one. The attribute path may be dotted
    (``"pkg.mod:Builders.small"``). Whether the object fits (callable, a class, ...) is the caller's
    check: only it knows what it expects.
    """
    module_name, _, path = (part.strip() for part in spec.partition(":"))
    if not module_name or not path or ":" in path:
        raise error(f"{kind} {spec!r}: expected the form 'package.module:{attr}' (one ':'), e.g. {example!r}")
    obj: Any = _import(spec, kind, module_name, error)
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(obj, part):
            where = f"module {module_name!r}" if depth == 0 else f"{module_name}:{'.'.join(parts[:depth])}"
            raise error(f"{kind} {spec!r}: {where} has no attribute {part!r}; {_closest_names(obj, part)}")
        obj = getattr(obj, part)
    return obj


def _import(spec: str, kind: str, module_name: str, error: type[DistilError]) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only the named module (or a parent package) missing is "cannot import"; a module that
        # exists but imports something missing is a failure inside it, reported as such.
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise error(
                f"{kind} {spec!r}: cannot import module {module_name!r} ({err}); "
                "expected an installed module or one in a directory on PYTHONPATH / sys.path"
            ) from err
        raise error(f"{kind} {spec!r}: importing module {module_name!r} failed: {err}") from err
    except Exception as err:
        raise error(f"{kind} {spec!r}: importing module {module_name!r} raised {type(err).__name__}: {err}") from err


def _closest_names(obj: Any, wanted: str) -> str:
    """The public callables of ``obj``, most like ``wanted`` first (at most ten), to spot a typo at a glance.

    Only callables: what a spec names (a factory, a loader, a class) is one, while the imported
    modules and constants of a user's module would only crowd the list.
    """
    names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
    if not names:
        return "it defines no public callables"
    ranked = sorted(names, key=lambda n: (-difflib.SequenceMatcher(None, wanted.lower(), n.lower()).ratio(), n))
    shown = ", ".join(ranked[:10]) + (", …" if len(ranked) > 10 else "")
    return f"its public callables, closest first: {shown}"
