"""Numbered model versions of a run: what ``distil loop`` promotes and ``distil serve`` serves.

Version 1 is the run itself (the student the server chooses from ``summary.json``). Every promotion
by ``distil loop`` adds ``RUN/versions/N/`` (N = 2, 3, ...) holding

* ``student.safetensors`` — the new student's weights (the next loop starts from them),
* ``student.onnx`` — its export, what the server runs,
* ``summary.json`` — its row (measured like every row: accuracy on the run's test split, params, size,
  latency) plus ``loop``: the comparison with the version it replaced. Written last and atomically:
  a folder without it is a promotion still being written (or one that crashed) and is not a version.

``RUN/versions/history.jsonl`` has one line per ``distil loop`` attempt, promoted or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSIONS = "versions"
SUMMARY = "summary.json"
HISTORY = "history.jsonl"
WEIGHTS = "student.safetensors"
ONNX = "student.onnx"


@dataclass(frozen=True)
class Version:
    """A promoted version: its number, its folder and its summary row (with ``loop``)."""

    number: int
    folder: Path
    summary: dict[str, Any]

    @property
    def row(self) -> dict[str, Any]:
        return self.summary["row"]

    @property
    def onnx(self) -> Path:
        return self.folder / ONNX

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS


def versions_dir(run: Path) -> Path:
    return Path(run) / VERSIONS


def promoted_versions(run: Path) -> list[Version]:
    """The complete promoted versions (2, 3, ...) of ``run``, oldest first; half-written folders are skipped."""
    root = versions_dir(run)
    found = []
    for folder in root.iterdir() if root.is_dir() else ():
        if not (folder.is_dir() and folder.name.isdigit() and int(folder.name) >= 2 and (folder / SUMMARY).is_file()):
            continue
        try:
            summary = json.loads((folder / SUMMARY).read_text())
        except (OSError, ValueError):
            continue
        found.append(Version(int(folder.name), folder, summary))
    return sorted(found, key=lambda v: v.number)


def next_version(run: Path) -> int:
    """The number the next promotion gets: one past every folder there (complete or not)."""
    root = versions_dir(run)
    numbers = [int(f.name) for f in root.iterdir() if f.name.isdigit()] if root.is_dir() else []
    return max([1, *numbers]) + 1
