"""The whole experiment config: every section, and the checks that span sections."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from distil.config.base import Section
from distil.config.cache import CacheConfig
from distil.config.compress import CompressConfig
from distil.config.data import DataConfig
from distil.config.distill import DistillConfig
from distil.config.strategy import NoStrategy, StrategyOptions, strategy_options, teacherless
from distil.config.sweep import SweepConfig
from distil.config.training import ModelConfig, TeacherConfig
from distil.losses import LOSSES


class MeasureConfig(Section):
    latency_repeats: int = Field(50, ge=1, description="timed batch-1 forwards after warm-up (median reported)")
    throughput_repeats: int = Field(5, ge=1, description="timed batch-256 forwards")


class LoggingConfig(Section):
    """Where per-epoch metrics go besides DIR/metrics.jsonl (always written)."""

    tensorboard: bool = Field(False, description="also write per-epoch scalars under DIR/tensorboard/<model> (needs the tensorboard extra)")


class ExperimentConfig(Section):
    name: str = "experiment"
    seed: int = 0
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    data: DataConfig
    teacher: TeacherConfig | None = Field(None, description="required unless the strategy needs no teacher (tf_kd, born_again, mutual)")
    student: ModelConfig
    distill: DistillConfig = Field(default_factory=DistillConfig)
    strategy: StrategyOptions = Field(default_factory=NoStrategy, description="how models are combined: `distil strategies`, or 'package.module:Class'")
    scratch: bool = Field(True, description="also train the student from scratch, with the same budget and seed")
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    compress: CompressConfig | None = Field(None, description="compress and export the distilled student after the run (see `distil compress`)")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    sweep: SweepConfig | None = Field(None, description="search space of `distil sweep` (ignored by `distil run`)")

    @field_validator("strategy", mode="wrap")
    @classmethod
    def _strategy_options(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> StrategyOptions:
        """The section validated by its strategy's own options model (chosen by ``name``)."""
        if isinstance(value, dict):
            name = value.get("name", "none")
            if not isinstance(name, str):
                raise ValueError(f"strategy.name must be a string, got {name!r}")
            return strategy_options(name).model_validate(value)
        return handler(value)

    @model_validator(mode="after")
    def _teacher_needs_weights_or_training(self) -> ExperimentConfig:
        if self.teacher is None:
            if self.strategy.needs_teacher:
                raise ValueError(f"teacher: required field is missing (only strategies {', '.join(teacherless())} run without one)")
            return self
        if self.teacher.sha256 and not self.teacher.weights:
            raise ValueError("teacher.sha256 is set but teacher.weights is not")
        return self

    @model_validator(mode="after")
    def _mixed_labels_need_soft_targets(self) -> ExperimentConfig:
        """Mixed inputs carry two labels each: every label term of the method must read soft targets (CE)."""
        augment = self.data.augment
        if augment.mixup == 0 and augment.cutmix == 0:
            return self
        hard = [s.loss for s in self.distill.term_specs() if s.weight != 0 and LOSSES[s.loss].uses_target and not LOSSES[s.loss].soft_targets]
        if hard:
            field = "mixup" if augment.mixup else "cutmix"
            raise ValueError(
                f"data.augment.{field}: mixed inputs have two labels each, but distill.method {self.distill.method!r} has the label term "
                f"{hard[0]}, which reads one; use a method whose label term is CE (fm, kd, dist, ...) or turn mixing off"
            )
        return self
