"""The strategy registry: name → :class:`Strategy`, open to users.

A strategy's ``prepare(context)`` runs before the run directory is touched: it builds every model it
will train, loads every weights file and checks data and shapes, raising a
:class:`~distil.errors.DistilError` on bad input. It returns the function that trains (the
*runner*), which the experiment calls after the teacher (if any) and the scratch student are done.

Two ways to add one:

- from Python, ``@register_strategy("name", "description", options=MyOptions)`` on a
  ``prepare(context) -> runner`` function (how the built-ins are registered), or on a
  :class:`Strategy` subclass;
- from YAML, ``strategy: {name: "package.module:MyStrategy", ...}`` naming a :class:`Strategy`
  subclass: its ``Options`` (a :class:`~distil.config.StrategyOptions` subclass) validate the section.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from distil.config import StrategyOptions, register_options, strategy_options
from distil.errors import ConfigError
from distil.imports import import_object

if TYPE_CHECKING:
    from distil.strategies.context import Context

Runner = Callable[["Context"], None]
Prepare = Callable[["Context"], Runner]


class Strategy:
    """A way of combining models, made of the run session's steps. Subclass it and implement
    :meth:`prepare`; ``Options`` is the pydantic model of its ``strategy:`` section."""

    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    #: one line for ``distil strategies``
    description: ClassVar[str] = ""
    #: where it is benchmarked: a section of benchmarks/strategies/README.md, or a README path ("" when nowhere yet)
    benchmark: ClassVar[str] = ""
    #: runs under torchrun (each process on its shard of the training data); checked at start
    distributed: ClassVar[bool] = False
    #: works on tagging data (a tag per token, per-token logits); checked at start
    per_token: ClassVar[bool] = False
    #: works on paired data (the teacher sees ``x_teacher``, the student ``x``: every model it builds,
    #: trains and evaluates gets the input of its side); ``"students"``: every model it trains, and every
    #: teacher it uses, is a student (born-again generations): it runs on ``data.for_student()``, the
    #: run's teacher unused; checked at start
    paired: ClassVar[bool | Literal["students"]] = False

    def prepare(self, ctx: Context) -> Runner:
        """Build and check everything before any training; return the function that trains."""
        raise NotImplementedError(f"{type(self).__name__}.prepare")


class _PrepareFunction(Strategy):
    """A strategy given as a ``prepare`` function (the built-ins)."""

    def __init__(
        self, prepare: Prepare, options: type[StrategyOptions], description: str, benchmark: str, distributed: bool, per_token: bool,
        paired: bool | Literal["students"] = False,
    ) -> None:
        self._prepare = prepare
        self.Options, self.description, self.benchmark, self.distributed, self.per_token = options, description, benchmark, distributed, per_token  # type: ignore[misc]
        self.paired = paired  # type: ignore[misc]

    def prepare(self, ctx: Context) -> Runner:
        return self._prepare(ctx)


STRATEGIES: dict[str, Strategy] = {}

#: The built-in strategies' modules, imported on first use so ``distil.config`` stays light.
BUILTIN = ("ensemble", "transfer", "self_distill", "assistants", "mutual", "frozen_backbone", "specialists", "self_supervised", "semi_supervised", "bit")

P = TypeVar("P", bound=Callable)


def register_strategy(
    name: str,
    description: str = "",
    *,
    options: type[StrategyOptions] | None = None,
    benchmark: str = "",
    distributed: bool = False,
    per_token: bool = False,
    paired: bool | Literal["students"] = False,
) -> Callable[[P], P]:
    """Decorator: make a ``prepare`` function (or a :class:`Strategy` subclass) the strategy ``name``.

    ``options`` validate its ``strategy:`` section (default: a subclass's ``Options``; for a function,
    the options already registered under ``name``, as the built-ins' are in :mod:`distil.config.strategy`).
    ``distributed``: it runs under torchrun; ``per_token``: it works on tagging data (per-token logits);
    ``paired``: it works on paired data (every teacher it builds sees ``data.for_teacher()``, every student ``data``;
    ``"students"``: all its models, teachers included, are students and see ``data.for_student()``).
    """

    def add(target: P) -> P:
        if isinstance(target, type) and issubclass(target, Strategy):
            strategy: Strategy = target()
            chosen = options or target.Options
        elif callable(target):
            chosen = options or strategy_options(name)
            strategy = _PrepareFunction(target, chosen, description, benchmark, distributed, per_token, paired)
        else:
            raise ConfigError(f"register_strategy({name!r}) must decorate a prepare function or a Strategy subclass, got {target!r}")
        register_options(name, chosen)
        STRATEGIES[name] = strategy
        return target

    return add


def strategies() -> dict[str, Strategy]:
    """Every registered strategy by name (the built-ins imported on first use)."""
    for module in BUILTIN:
        importlib.import_module(f"distil.strategies.{module}")
    return STRATEGIES


def get_strategy(name: str) -> Strategy:
    """The strategy ``name``: a registered one, or a :class:`Strategy` subclass named ``"package.module:Class"``."""
    if ":" in name:
        target = import_object(name, "strategy", ConfigError, attr="Class", example="mypkg.strategies:MyStrategy")
        if not (isinstance(target, type) and issubclass(target, Strategy)):
            raise ConfigError(f"strategy {name!r}: expected a subclass of distil.strategies.Strategy, got {target!r}")
        return target()
    known = strategies()
    if name not in known:
        raise ConfigError(f"strategy {name!r} has options but no registered implementation; known strategies: {', '.join(known)}")
    return known[name]


def list_strategies() -> dict[str, str]:
    """Name → description, for ``distil strategies``."""
    return {name: s.description + (f"  [{_benchmark_page(s.benchmark)}]" if s.benchmark else "") for name, s in strategies().items()}


def _benchmark_page(benchmark: str) -> str:
    """``"MNIST-1D"`` (a section of benchmarks/strategies/README.md) or a README path of its own."""
    return benchmark if benchmark.endswith(".md") else f"benchmarks/strategies/README.md: {benchmark}"
