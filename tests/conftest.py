"""Shared test setup: teacher caches go to a per-test temporary directory, never to ~/.cache."""

import pytest


@pytest.fixture(autouse=True)
def _teacher_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTIL_CACHE", str(tmp_path / "teacher-cache"))
