"""The run directory: config, per-epoch metrics, weights, and ``summary.json`` written last.

``summary.json`` exists only for a run that finished: a stale one is removed when a run starts, and
the new one is written atomically after everything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from distil.config import ExperimentConfig, apply_override, validate_config
from distil.errors import ConfigError
from distil.weights import atomic_write

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def start(self, config: dict[str, Any]) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"--out {self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / SUMMARY).unlink(missing_ok=True)
        (self.path / METRICS).write_text("")
        text = yaml.safe_dump(config, sort_keys=False)
        atomic_write(self.path / CONFIG, lambda tmp: tmp.write_text(text))

    def log_epoch(self, model: str, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps({"model": model, **record}) + "\n")

    def weights(self, name: str) -> Path:
        return self.path / f"{name}.safetensors"

    def write_summary(self, summary: dict[str, Any]) -> Path:
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write(self.path / SUMMARY, lambda tmp: tmp.write_text(text))
        return self.path / SUMMARY


def read_summary(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / SUMMARY).read_text())


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The run's ``config.yaml`` with ``overrides`` (``compress.prune.sparsity=0.3``), validated like any config."""
    file = Path(path) / CONFIG
    if not file.is_file():
        raise ConfigError(f"{path} is not a run directory: {CONFIG} not found (make one with `distil run CONFIG --out {path}`)")
    raw = yaml.safe_load(file.read_text())
    for item in overrides:
        apply_override(raw, item)
    return validate_config(raw, source=str(file))
