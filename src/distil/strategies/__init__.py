"""Training strategies: ensembles, specialists, mutual learning, self-distillation, assistant chains,
unlabeled transfer sets, frozen-backbone transfer — each a configuration of the one engine.

A strategy is registered by name (:mod:`distil.strategies.registry`; users add theirs with
:func:`register_strategy` or name a :class:`Strategy` subclass in YAML as ``"package.module:Class"``).
Its ``prepare`` checks everything it needs before any training and returns the function that trains;
that one calls the run session's ordinary steps (fit, record, distil) with other teachers, students or data.
"""

from distil.strategies.context import Context
from distil.strategies.prepare import PreparedStrategy, prepare_strategy
from distil.strategies.registry import STRATEGIES, Runner, Strategy, get_strategy, list_strategies, register_strategy, strategies

__all__ = ["STRATEGIES", "Context", "PreparedStrategy", "Runner", "Strategy", "get_strategy", "list_strategies", "prepare_strategy", "register_strategy", "strategies"]
