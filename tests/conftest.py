"""Shared test setup: teacher caches go to a per-test temporary directory, never to ~/.cache; threads
are chosen as the CLI chooses them (one per core, or DISTIL_THREADS / OMP_NUM_THREADS)."""

import pytest

from distil.hardware import set_threads

set_threads()


@pytest.fixture(autouse=True)
def _teacher_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTIL_CACHE", str(tmp_path / "teacher-cache"))
