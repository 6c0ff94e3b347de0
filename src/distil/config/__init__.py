"""The experiment config: YAML validated by pydantic before any work starts, one module per section.

Every section forbids unknown keys, so a typo is an error that names the field and lists the keys
the section accepts. Sections turn themselves into what the layers below take: ``student.settings()``
(the training loop's settings), ``student.build(data, seed)`` (the model), ``data.load(seed)`` (the
dataset), ``data.augment.build(data)`` (batched augmentation), ``cache.settings(seed)`` (teacher outputs),
``distill.term_specs()`` (the objective's terms).
"""

from distil.config.base import Section
from distil.config.cache import CacheConfig
from distil.config.compress import COMPRESS_STEPS, CompressConfig, Int8Config, LowRankConfig, OnnxConfig, OnnxInt8Config, PruneConfig
from distil.config.data import AugmentConfig, DataConfig, ViewsConfig
from distil.config.distill import DistillConfig, TermConfig
from distil.config.experiment import ExperimentConfig, LoggingConfig, MeasureConfig
from distil.config.files import (
    KEYED_LISTS,
    apply_override,
    dump_config,
    format_validation_error,
    load_config,
    map_paths,
    read_raw,
    resolve_paths,
    set_path,
    validate_config,
)
from distil.config.strategy import STRATEGY_OPTIONS, NoStrategy, StrategyOptions, register_options, strategy_options, teacherless
from distil.config.sweep import SweepConfig, SweepParam
from distil.config.training import ModelConfig, TeacherConfig, TrainConfig

__all__ = [
    "COMPRESS_STEPS",
    "KEYED_LISTS",
    "STRATEGY_OPTIONS",
    "AugmentConfig",
    "CacheConfig",
    "CompressConfig",
    "DataConfig",
    "DistillConfig",
    "ExperimentConfig",
    "Int8Config",
    "LoggingConfig",
    "LowRankConfig",
    "MeasureConfig",
    "ModelConfig",
    "NoStrategy",
    "OnnxConfig",
    "OnnxInt8Config",
    "PruneConfig",
    "Section",
    "StrategyOptions",
    "SweepConfig",
    "SweepParam",
    "TeacherConfig",
    "TermConfig",
    "TrainConfig",
    "ViewsConfig",
    "apply_override",
    "dump_config",
    "format_validation_error",
    "load_config",
    "map_paths",
    "read_raw",
    "register_options",
    "resolve_paths",
    "set_path",
    "strategy_options",
    "teacherless",
    "validate_config",
]
