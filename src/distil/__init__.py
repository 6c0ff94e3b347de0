"""distil: knowledge distillation for PyTorch — teacher → distil → table, from YAML or Python.

    from distil import build_model, distill, evaluate, load_dataset, losses

The names below are imported on first use, so ``import distil.losses`` (or any one layer) does not
pull in the rest of the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → the module that defines it
_EXPORTS = {
    "losses": "distil.losses",
    "distill": "distil.api",
    "evaluate": "distil.api",
    "train": "distil.api",
    "ExperimentConfig": "distil.config",
    "load_config": "distil.config",
    "BatchAugment": "distil.data",
    "TextAugment": "distil.data",
    "Dataset": "distil.data",
    "Split": "distil.data",
    "load_dataset": "distil.data",
    "run_experiment": "distil.experiment",
    "build_model": "distil.models",
    "register_model": "distil.models",
    "register_dataset": "distil.data",
    "register_strategy": "distil.strategies",
    "Strategy": "distil.strategies",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'distil' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if module.__name__ == f"distil.{name}" else getattr(module, name)
