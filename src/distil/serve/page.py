"""The web page at ``/``: upload or draw an image — or, for a text run, type a sentence — and see each
served model's answer (top classes; a tagger's tag under each word) and latency, side by side."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from distil.serve.repository import ServedModel

#: What the page's model card shows of each model (the served row's own numbers; see selection.py).
CARD = ("row", "method", "accuracy", "params", "size_bytes", "latency_ms_b1", "measured_runtime", "selected_by")


@cache
def _template() -> str:
    return files("distil.serve").joinpath("page.html").read_text(encoding="utf-8")


def page_html(models: list[ServedModel]) -> str:
    """The page with the served models (name, role, input shape) filled in."""
    described = [
        {
            "name": m.name,
            "role": m.role,
            "input_shape": list(m.input_shape),
            "kind": m.inputs.kind,
            "tags_words": m.tags_words,
            "runtime": m.backend.name,
            **{k: m.info[k] for k in ("arch", "accuracy") if k in m.info},
            "card": {k: m.info[k] for k in CARD if k in m.info},
            "class_names": list(m.class_names),
        }
        for m in models
    ]
    # "</" cannot end the <script> block early once escaped
    return _template().replace("__MODELS__", json.dumps(described).replace("</", "<\\/"))
