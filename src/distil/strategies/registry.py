"""The strategy registry: name → :class:`Strategy`, filled by :func:`register_strategy`.

A strategy's ``prepare(context)`` runs before the run directory is touched: it builds every model it
will train, loads every weights file and checks data and shapes, raising a
:class:`~distil.errors.DistilError` on bad input. It returns the function that trains, which the
experiment calls after the teacher (if any) and the scratch student are done.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distil.strategies.context import Context

Runner = Callable[["Context"], None]


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    prepare: Callable[[Context], Runner]
    #: the data it is benchmarked on in benchmarks/strategies.md ("" when nowhere yet)
    benchmark: str = ""
    #: runs under torchrun (each process on its shard of the training data); checked at start
    distributed: bool = False


STRATEGIES: dict[str, Strategy] = {}

#: The built-in strategies' modules, imported on first use so ``distil.config`` stays light.
BUILTIN = ("ensemble", "transfer", "self_distill", "assistants", "mutual", "frozen_backbone", "specialists")


def register_strategy(
    name: str, description: str, benchmark: str = "", distributed: bool = False
) -> Callable[[Callable[[Context], Runner]], Callable[[Context], Runner]]:
    def add(prepare: Callable[[Context], Runner]) -> Callable[[Context], Runner]:
        STRATEGIES[name] = Strategy(name, description, prepare, benchmark, distributed)
        return prepare

    return add


def strategies() -> dict[str, Strategy]:
    for module in BUILTIN:
        importlib.import_module(f"distil.strategies.{module}")
    return STRATEGIES


def list_strategies() -> dict[str, str]:
    """Name → description, for ``distil strategies``."""
    return {name: s.description + (f"  [benchmarks/strategies.md: {s.benchmark}]" if s.benchmark else "") for name, s in strategies().items()}
