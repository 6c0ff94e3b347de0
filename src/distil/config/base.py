"""What every config section shares: unknown keys are errors, and names are checked against registries."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def registered(kind: str, name: str, known: list[str]) -> str:
    """``name`` if it is one of ``known``, else a ValueError with the closest name and the full list."""
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.3)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint}; known {kind}s: {', '.join(known)}")
    return name
