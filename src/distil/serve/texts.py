"""Texts a ``/predict`` request carries: JSON ``{"text": ...}``, a form field ``text``, or a text/plain body.

``text`` is one string or a list of strings. The checks of the model's input (non-empty, at most the
server's UTF-8 byte limit: 413) apply after this; here only the request's form is checked.
"""

from __future__ import annotations

import json

from fastapi import Request

from distil.serve.protocol import InferError

FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
EXPECTED = 'send JSON {"text": "..."} (or a list of texts), a form field \'text\', or a text/plain body'


async def request_texts(request: Request) -> list[str]:
    """The texts of a /predict request for a text model (InferError with a 4xx status when its form is wrong)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in FORMS:
        form = await request.form(max_files=0, max_fields=4)
        value = form.get("text")
        if not isinstance(value, str):
            raise InferError(f"the form has no field 'text'; {EXPECTED}")
        return [value]
    body = await request.body()
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InferError(f"the body is not valid JSON: {err}") from None
        value = payload.get("text") if isinstance(payload, dict) else None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        raise InferError(f'expected a JSON object with "text": a string or a non-empty list of strings; {EXPECTED}')
    if kind in ("text/plain", ""):
        try:
            return [body.decode("utf-8")]
        except UnicodeDecodeError as err:
            raise InferError(f"the body is not valid UTF-8 ({err.reason} at byte {err.start}); send the text as UTF-8") from None
    raise InferError(f"unsupported content type {kind!r} for a text model; {EXPECTED}", 415)
