"""Weight schedules of a term: a factor in [0, 1] as a function of training progress in [0, 1).

``Warmup(0.1)`` ramps a term in linearly over the first 10 % of training (DKD's warm-up);
``Until(0.2)`` keeps it only for the first 20 % and ``After(0.2)`` only after — together they make
FitNets' two stages (hints first, then KD) in one run.
"""

from __future__ import annotations

from dataclasses import dataclass


def _fraction(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} takes a fraction of training in [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class Warmup:
    """Linear ramp from 0 to 1 over the first ``fraction`` of training, then 1."""

    fraction: float

    def __post_init__(self) -> None:
        _fraction("warmup", self.fraction)

    def __call__(self, progress: float) -> float:
        return 1.0 if self.fraction == 0 else min(1.0, progress / self.fraction)


@dataclass(frozen=True)
class Until:
    """1 before ``fraction`` of training, 0 after."""

    fraction: float

    def __post_init__(self) -> None:
        _fraction("until", self.fraction)

    def __call__(self, progress: float) -> float:
        return 1.0 if progress < self.fraction else 0.0


@dataclass(frozen=True)
class After:
    """0 before ``fraction`` of training, 1 after."""

    fraction: float

    def __post_init__(self) -> None:
        _fraction("after", self.fraction)

    def __call__(self, progress: float) -> float:
        return 1.0 if progress >= self.fraction else 0.0


SCHEDULES = {"warmup": Warmup, "until": Until, "after": After}
