"""The ``sweep:`` section: which dotted config paths a sweep varies, over which values, toward which metric.

A parameter is a path as the command line's ``KEY=VALUE`` overrides name it (``student.lr``,
``distill.terms.KD.params.T``), so every trial is the base config plus overrides, validated exactly like
a run. This module is plain pydantic and arithmetic: optuna is imported only when a sweep runs.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distil.config.base import Section

#: What a sweep may optimise: a numeric field of the chosen model's row in summary.json, and its natural
#: direction. The test accuracy is deliberately absent: choosing on the test split would make the
#: reported test accuracy of the best trial an optimistic, selected number.
METRICS: dict[str, Literal["maximize", "minimize"]] = {
    "val_accuracy": "maximize",
    "train_seconds": "minimize",
    "latency_ms_b1": "minimize",
    "size_bytes": "minimize",
}

Primitive = (bool, int, float, str, type(None))


class SweepParam(Section):
    """One swept value: a range ``{low, high[, step, log, type]}``, a list ``{choices: [...]}``, or a value
    tied to another parameter ``{tied: PATH, scale, offset}`` = offset + scale × that parameter (α and 1 − α)."""

    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = Field(None, description="grid spacing of the range (needed by the grid sampler for floats)")
    log: bool = Field(False, description="sample the range on a log scale (low > 0; no step)")
    type: Literal["int", "float"] | None = Field(None, description="int or float; default: int when low, high (and step) are written as integers")
    choices: list[Any] | None = None
    tied: str | None = Field(None, description="another parameter's path: this value is offset + scale × that value")
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _one_form(self) -> SweepParam:
        given = self.model_fields_set
        forms = {"range": bool({"low", "high"} & given), "choices": "choices" in given, "tied": "tied" in given}
        chosen = [k for k, on in forms.items() if on]
        if len(chosen) != 1:
            got = f"; got {' and '.join(chosen)}" if chosen else ""
            raise ValueError(f"give exactly one of {{low, high}}, {{choices: [...]}} or {{tied: PATH}}{got}")
        allowed = {"range": {"low", "high", "step", "log", "type"}, "choices": {"choices"}, "tied": {"tied", "scale", "offset"}}[chosen[0]]
        stray = sorted(given - allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)} do not apply to a {chosen[0]} parameter")
        if self.choices is not None and not self.choices:
            raise ValueError("empty choices: list at least one value")
        if forms["range"]:
            self._check_range()
        return self

    def _check_range(self) -> None:
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high")
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} > high {self.high}")
        if self.low == self.high:
            raise ValueError(f"empty range: low = high = {self.low}; a fixed value belongs in the config, not in the sweep")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.step is not None:
            if self.step <= 0:
                raise ValueError(f"step must be > 0, got {self.step}")
            if self.log:
                raise ValueError("a range has either step or log, not both")
        if self.kind == "int" and any(v is not None and float(v) != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError(f"an int range needs integer low, high and step, got {self.low}, {self.high}, {self.step}")

    @property
    def kind(self) -> str:
        """range: int or float; otherwise choices or tied."""
        if self.choices is not None:
            return "choices"
        if self.tied is not None:
            return "tied"
        if self.type is not None:
            return self.type
        written = [v for v in (self.low, self.high, self.step) if v is not None]
        return "int" if all(isinstance(v, int) for v in written) else "float"

    def probe_values(self) -> list[Any]:
        """Values a config is validated at before any trial: the ends, one inside value, every choice."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            step = int(self.step or 1)
            inside = int(self.low) + step * ((int(self.high) - int(self.low)) // step // 2)
            return [int(self.low), inside, int(self.low) + step * ((int(self.high) - int(self.low)) // step)]
        # an inside value with a fraction catches float values given to integer fields
        inside = math.exp(math.log(self.low) + 0.37 * (math.log(self.high) - math.log(self.low))) if self.log else self.low + 0.37 * (self.high - self.low)
        return [float(self.low), inside, float(self.high)]

    def grid(self) -> list[Any]:
        """Every value, for the grid sampler (a float range needs its step)."""
        if self.choices is not None:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError("the grid sampler needs a step for a float range (or give choices)")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + k * self.step, 12) for k in range(count)]


class SweepConfig(Section):
    """``distil sweep``: the space, the sampler and the metric. ``distil run`` ignores this section."""

    metric: str = Field("val_accuracy", description=f"what the best trial maximises or minimises: {', '.join(METRICS)} (never the test accuracy)")
    model: str | None = Field(None, description="the row of the trial's summary.json the metric is read from (default: student_<distill.method>)")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="default: the metric's natural direction")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe (random for its first 10 trials), random, or grid (every combination once)")
    seed: int = Field(0, description="sampler seed; each trial's draw is seeded with (seed, trial number), so a resumed sweep draws as an uninterrupted one")
    params: dict[str, SweepParam] = Field(description="dotted config path (as in KEY=VALUE overrides) → range, choices or tied")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric in ("accuracy", "test_accuracy"):
            raise ValueError("the test accuracy is not a sweep metric: choosing on the test split makes the best trial's test accuracy optimistic; use val_accuracy")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
        return metric

    @model_validator(mode="after")
    def _space(self) -> SweepConfig:
        if not self.params:
            raise ValueError("params: empty; name at least one config path to sweep, e.g. student.lr: {low: 0.01, high: 0.2, log: true}")
        for path, param in self.params.items():
            for prefix in ("sweep", "teacher"):
                if path == prefix or path.startswith(prefix + "."):
                    why = "the sweep section itself cannot be swept" if prefix == "sweep" else "trials share one teacher (trained once or loaded)"
                    raise ValueError(f"params.{path}: {why}")
            if param.tied is not None:
                source = self.params.get(param.tied)
                if source is None or source.tied is not None:
                    raise ValueError(f"params.{path}: tied to {param.tied!r}, which is not a sampled parameter of this sweep; sampled: {', '.join(self.sampled)}")
                if source.kind not in ("int", "float"):
                    raise ValueError(f"params.{path}: tied to {param.tied!r}, which is not numeric")
            elif self.sampler == "grid" and param.kind == "float" and param.step is None:
                raise ValueError(f"params.{path}: the grid sampler needs a step for a float range (or give choices)")
        return self

    @property
    def sampled(self) -> list[str]:
        return [p for p, v in self.params.items() if v.tied is None]

    @property
    def goal(self) -> Literal["maximize", "minimize"]:
        return self.direction or METRICS[self.metric]


def encode_choice(value: Any) -> Any:
    """Optuna stores choices of plain types only: lists and mappings travel as their JSON text."""
    return value if isinstance(value, Primitive) else json.dumps(value)


def decode_choice(param: SweepParam, stored: Any) -> Any:
    if param.choices is not None and not any(c == stored for c in param.choices if isinstance(c, Primitive)):
        return json.loads(stored)
    return stored


def trial_values(space: SweepConfig, sampled: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's value (tied ones computed) from the sampler's, in the order of the space."""
    values: dict[str, Any] = {}
    for path, param in space.params.items():
        if param.tied is not None:
            values[path] = round(param.offset + param.scale * sampled[param.tied], 12)
        else:
            values[path] = decode_choice(param, sampled[path])
    return values
