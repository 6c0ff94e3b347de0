"""User models: ``"package.module:factory"`` names any importable callable that returns an ``nn.Module``.

The name is resolved by :func:`distil.imports.import_object` (importable from ``sys.path``: an
installed package, or a directory on ``PYTHONPATH``). ``factory`` may be a dotted attribute path
(``"pkg.mod:Builders.small"``) and may be an ``nn.Module`` subclass itself. How it is called (which
of ``input_shape``/``num_classes`` it gets) is decided by
:func:`distil.models.registry.call_factory` from its signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distil.errors import ModelError
from distil.imports import import_object


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable that ``"package.module:factory"`` names, or a ModelError saying what is missing."""
    obj = import_object(spec, "model", ModelError, attr="factory", example="mymodels:tiny_cnn")
    if not callable(obj):
        module_name, _, attr = (part.strip() for part in spec.partition(":"))
        raise ModelError(
            f"model {spec!r}: {attr!r} in module {module_name!r} is not callable (type {type(obj).__qualname__}); "
            "expected a callable that returns an nn.Module"
        )
    return obj
