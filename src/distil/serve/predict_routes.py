"""The routes for people: ``POST /predict`` (an image, a JSON array or text in, top classes out) and the page at ``/``.

Unlike OIP infer, ``/predict`` takes inputs at their raw scale (pixels, as the user has them) and
normalizes them as in training, and answers class names with probabilities and the latency. A text
model takes ``{"text": ...}``, a form field ``text`` or a text/plain body (:mod:`distil.serve.texts`)
and answers its top classes per text — a tagger: each word with its tag — with the model's latency
and the tokenizer's.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from distil.serve.audio import AudioInput
from distil.serve.images import array_to_raw, image_to_raw, normalize
from distil.serve.inputs import Batch, TextInput
from distil.serve.page import page_html
from distil.serve.protocol import InferError
from distil.serve.repository import ServedModel, softmax, word_tags
from distil.serve.state import ServeState
from distil.serve.texts import request_texts


def add_predict_routes(app: FastAPI, state: ServeState) -> None:
    """Add ``/predict`` (the main model unless ``?model=`` names another; ``?k=`` top classes) and ``/``."""

    @app.post("/predict")
    async def predict(request: Request, model: str | None = None, k: int | None = None) -> dict:
        served = state.model(model or state.main)
        top = min(k or state.settings.top_k, served.num_classes)
        if top < 1:
            raise InferError("k must be at least 1")
        answer: dict = {"model": served.name, "version": served.version, "role": served.role}
        if isinstance(served.input, TextInput):
            texts = await request_texts(request)
            start = time.perf_counter()
            batch = await state.prepare(served.input.encode, served, texts, state.settings.limits)
            answer["tokenize_ms"] = round((time.perf_counter() - start) * 1000, 3)
        elif isinstance(served.input, AudioInput):
            start = time.perf_counter()
            batch = served.input.from_wav(await _upload(request))
            answer["features_ms"] = round((time.perf_counter() - start) * 1000, 3)
        else:
            start = time.perf_counter()
            batch = Batch(normalize(await _raw_input(request, served, state.settings.max_request_batch), served.mean, served.std))
            answer["decode_ms"] = round((time.perf_counter() - start) * 1000, 3)
        start = time.perf_counter()
        logits, timing, ids = await state.timed_logits(served, batch)
        answer["latency_ms"] = round((time.perf_counter() - start) * 1000, 3)  # queue + model + hand-back, in the server
        answer |= timing.as_dict()  # compute_ms: the forward pass alone; queue_ms: waiting for it
        if ids:
            answer["feedback_ids"] = ids  # POST /feedback {"id", "label"} corrects a prediction
        probs = softmax(logits)
        if served.tags_words:
            assert batch.words is not None
            answer["tags"] = [
                [{"word": w, "tag": served.class_names[i], "index": i, "probability": p} for w, (i, p) in zip(words, row)]
                for words, row in zip(batch.words, word_tags(batch, probs))
            ]
            return answer
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        answer["predictions"] = [
            [{"class": served.class_names[i], "index": int(i), "probability": float(p[i])} for i in row] for row, p in zip(order, probs)
        ]
        return answer

    @app.post("/feedback")
    async def feedback(request: Request) -> dict:
        """A person's label for a captured sample: ``{"id": <feedback_id>, "label": <class name>}``."""
        if state.feedback is None:
            raise InferError("feedback is off: start the server with --feedback DIR", 409)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InferError(f"the body is not valid JSON: {err}") from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("label"), str):
            raise InferError('expected {"id": "<feedback_id from /predict>", "label": "<class name>"}', 422)
        stored = await asyncio.to_thread(state.feedback.correct, body["id"], body["label"])
        return {"stored": stored}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> Response:
        if not state.models:  # teachable mode before its first Train
            return RedirectResponse("/teach")
        return HTMLResponse(page_html(state.models))


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _upload(request: Request) -> bytes:
    """The file a /predict request carries: the multipart field ``file``, or the body itself (e.g. ``audio/wav``)."""
    if _content_type(request) == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InferError("the multipart form has no file field named 'file'")
        return await upload.read()
    return await request.body()


async def _raw_input(request: Request, model: ServedModel, max_batch: int) -> np.ndarray:
    """The raw-scale batch a /predict request carries: a multipart upload, an image body or JSON."""
    kind = _content_type(request)
    if kind == "multipart/form-data":
        return image_to_raw(await _upload(request), model.input_shape)
    body = await request.body()
    if kind == "application/json":
        try:
            values = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InferError(f"the body is not valid JSON: {err}") from None
        if isinstance(values, dict):
            values = values.get("data", values.get("inputs"))
        if not isinstance(values, list):
            raise InferError('expected a JSON array of input values, or {"data": [...]}')
        return array_to_raw(values, model.input_shape, max_batch)
    if kind.startswith("image/") or kind in ("application/octet-stream", ""):
        return image_to_raw(body, model.input_shape)
    raise InferError(
        f"unsupported content type {kind!r}: send an image (multipart field 'file', or image/png, image/jpeg) or a JSON array", 415
    )
