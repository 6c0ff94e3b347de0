"""How the experiment hands over to a strategy: prepare (checks, before any work), then run."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from distil.data import Augment, Dataset
from distil.errors import ConfigError
from distil.session import RunSession
from distil.strategies.context import Context
from distil.strategies.registry import Runner, get_strategy, strategies


@dataclass
class PreparedStrategy:
    context: Context
    runner: Runner
    #: paired data, a strategy whose models are all students: it sees the students' side alone
    students_side: bool = False

    def run(self, data: Dataset, teacher: nn.Module | None, augment: Augment) -> None:
        """Train with the data now on the device and the teacher trained (or loaded)."""
        if self.students_side:
            data, teacher = data.for_student(), None
        self.context.data, self.context.teacher, self.context.augment = data, teacher, augment
        self.runner(self.context)


def prepare_strategy(session: RunSession, data: Dataset, teacher: nn.Module | None) -> PreparedStrategy | None:
    """``None`` for ``strategy: none``; otherwise the strategy checked and ready (raises DistilError on bad input)."""
    cfg = session.config
    if cfg.strategy.name == "none":
        return None
    strategy = get_strategy(cfg.strategy.name)
    if data.text is not None and data.text.task == "tag" and not strategy.per_token:
        works = sorted(name for name, s in strategies().items() if s.per_token)
        raise ConfigError(
            f"strategy: {cfg.strategy.name!r} does not work on tagging data ({data.name!r}: a tag per token) yet; "
            f"use none or one of {', '.join(works)}"
        )
    if data.paired and not strategy.paired:
        works = sorted(name for name, s in strategies().items() if s.paired)
        raise ConfigError(
            f"strategy: {cfg.strategy.name!r} does not work on paired data yet ({data.name!r}: the teacher sees x_teacher, the student x; "
            f"it would show a model the other side's inputs); use none{''.join(', ' + w for w in works)}"
        )
    if session.dist is not None and not strategy.distributed:
        raise ConfigError(f"strategy: {cfg.strategy.name!r} is not supported with torchrun yet; run it in one process (python -m distil run ...)")
    students_side = data.paired and strategy.paired == "students"
    if students_side:  # born-again generations: every teacher is a student, on the students' inputs
        data, teacher = data.for_student(), None
    context = Context(session, data, teacher, cfg.data.augment.build(data))
    return PreparedStrategy(context, strategy.prepare(context), students_side)
