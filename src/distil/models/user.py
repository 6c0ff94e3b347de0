"""User models: ``"package.module:factory"`` names any importable callable that returns an ``nn.Module``.

The module is imported with :func:`importlib.import_module`, so it must be importable from
``sys.path`` (an installed package, or a directory on ``PYTHONPATH``). ``factory`` may be a dotted
attribute path (``"pkg.mod:Builders.small"``) and may be an ``nn.Module`` subclass itself. How it
is called (which of ``input_shape``/``num_classes`` it gets) is decided by
:func:`distil.models.registry.call_factory` from its signature.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from distil.errors import ModelError


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable that ``"package.module:factory"`` names, or a ModelError saying what is missing."""
    module_name, _, attr = (part.strip() for part in spec.partition(":"))
    if not module_name or not attr or ":" in attr:
        raise ModelError(f"model {spec!r}: expected the form 'package.module:factory' (one ':'), e.g. 'mymodels:tiny_cnn'")
    module = _import(spec, module_name)
    obj: Any = module
    for depth, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = f"module {module_name!r}" if depth == 0 else f"{module_name}:{'.'.join(attr.split('.')[:depth])}"
            raise ModelError(f"model {spec!r}: {where} has no attribute {part!r}; {_callables(obj, part)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(
            f"model {spec!r}: {attr!r} in module {module_name!r} is not callable (type {type(obj).__qualname__}); "
            "expected a callable that returns an nn.Module"
        )
    return obj


def _import(spec: str, module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ModelError(
                f"model {spec!r}: cannot import module {module_name!r} ({err}); "
                "expected an installed module or one in a directory on PYTHONPATH / sys.path"
            ) from err
        raise ModelError(f"model {spec!r}: importing module {module_name!r} failed: {err}") from err
    except Exception as err:
        raise ModelError(f"model {spec!r}: importing module {module_name!r} raised {type(err).__name__}: {err}") from err


def _callables(obj: Any, wanted: str) -> str:
    names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
    if not names:
        return "it defines no public callables"
    ranked = sorted(names, key=lambda n: (-difflib.SequenceMatcher(None, wanted.lower(), n.lower()).ratio(), n))
    shown = ", ".join(ranked[:10]) + (", …" if len(ranked) > 10 else "")
    return f"its public callables, closest first: {shown}"
