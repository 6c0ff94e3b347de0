"""Configs and CLI runs shared by the strategy tests: a base config changed per test, run by `distil run`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from distil.cli import app

runner = CliRunner()


def changed(base: dict[str, Any], strategy: dict[str, Any] | None, **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``strategy`` set (unless None) and top-level keys replaced (None: removed)."""
    raw = copy.deepcopy(base)
    if strategy is not None:
        raw["strategy"] = strategy
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def run_cli(folder: Path, raw: dict[str, Any]) -> Result:
    """``distil run FOLDER/c.yaml --out FOLDER/out`` with ``raw`` as the config."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return runner.invoke(app, ["run", str(path), "--out", str(folder / "out")])


def run_cli_with(folder: Path, raw: dict[str, Any], **env: str) -> Result:
    """:func:`run_cli` with environment variables set for the run only (e.g. a cache folder of its own);
    the run must succeed."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        result = run_cli(folder, raw)
    assert result.exit_code == 0, result.output
    return result
