"""The HTTP app: Open Inference Protocol v2 REST, ``/predict`` for people, a web page, ``/metrics``.

``create_app(models, settings)`` builds a FastAPI app around already-loaded :class:`ServedModel` s;
``distil serve`` runs it with uvicorn. Every error — a bad tensor, an unknown model or route, a
wrong method, a body over the limit, a full queue, a timeout, a model failure — is answered with a
non-200 status and a JSON body ``{"error": "..."}``, never plain text: OIP clients parse the body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from distil.serve.batching import Batcher, BatchSettings, QueueFull
from distil.serve.feedback import FeedbackWriter
from distil.serve.images import array_to_raw, image_to_raw, normalize
from distil.serve.metrics import ServerMetrics
from distil.serve.page import page_html
from distil.serve.protocol import HEADER_LENGTH, InferError, encode_response, parse_infer
from distil.serve.repository import ServedModel

log = logging.getLogger("distil.serve")


@dataclass(frozen=True)
class ServeSettings:
    batch: BatchSettings = field(default_factory=BatchSettings)
    max_body_bytes: int = 8 << 20  # larger requests get 413 before their body is read past this
    timeout_s: float = 10.0  # from queueing to result; past it the client gets 504
    max_request_batch: int = 256  # samples in one request
    top_k: int = 5


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def create_app(models: list[ServedModel], settings: ServeSettings | None = None, feedback: FeedbackWriter | None = None) -> FastAPI:
    """The app serving ``models`` (the first is the main one: /predict's default, feedback's source)."""
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    by_name = {m.name: m for m in models}
    batchers = {m.name: Batcher(m.backend.predict, settings.batch, metrics.batch_size.labels(m.name).observe) for m in models}
    for name, batcher in batchers.items():
        metrics.queue_depth.labels(name).set_function(lambda b=batcher: b.depth)
    main = models[0].name
    ready = {"value": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for batcher in batchers.values():
            batcher.start()
        ready["value"] = True
        try:
            yield
        finally:
            ready["value"] = False
            for batcher in batchers.values():
                await batcher.stop()
            if feedback is not None:
                feedback.flush()

    app = FastAPI(title="distil serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitsAndMetrics, max_body=settings.max_body_bytes, metrics=metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {
            404: f"no route {request.method} {request.url.path}",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }
        return error(exc.status_code, message.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        return error(422, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    @app.exception_handler(InferError)
    async def infer_error(request: Request, exc: InferError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    def model_of(name: str, version: str | None = None) -> ServedModel:
        if name not in by_name:
            raise InferError(f"unknown model {name!r}; served models: {', '.join(by_name)}", 404)
        if version is not None and version != "1":
            raise InferError(f"model {name!r} has no version {version!r}; its only version is 1", 404)
        return by_name[name]

    async def run(model: ServedModel, x: np.ndarray) -> np.ndarray:
        try:
            logits = await asyncio.wait_for(batchers[model.name].submit(x), settings.timeout_s)
        except TimeoutError:
            raise InferError(f"the request timed out after {settings.timeout_s} s in the queue and model", 504) from None
        if feedback is not None and model.name == main:
            kept = await asyncio.to_thread(feedback.add, x, logits.argmax(axis=1))
            metrics.feedback.inc(kept)
        return logits

    @app.get("/v2")
    async def server_metadata() -> dict:
        from distil import __version__

        return {"name": "distil", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def server_ready() -> Response:
        return JSONResponse({"ready": ready["value"]}, status_code=200 if ready["value"] else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict:
        return model_of(name, version).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        model_of(name, version)
        return JSONResponse({"name": name, "ready": ready["value"]}, status_code=200 if ready["value"] else 503)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        model = model_of(name, version)
        body = await request.body()
        parsed = parse_infer(
            body, request.headers.get(HEADER_LENGTH), model.backend.input_name, model.input_shape, settings.max_request_batch
        )
        logits = await run(model, parsed.x)
        content, headers = encode_response(model.name, parsed.id, parsed.outputs, {"logits": logits, "probabilities": softmax(logits)})
        media = headers.pop("content-type")
        return Response(content, media_type=media, headers=headers)

    @app.post("/predict")
    async def predict(request: Request, model: str = main, k: int | None = None) -> dict:
        served = model_of(model)
        top = min(k or settings.top_k, served.num_classes)
        if top < 1:
            raise InferError("k must be at least 1")
        raw = await _raw_input(request, served, settings.max_request_batch)
        start = time.perf_counter()
        logits = await run(served, normalize(raw, served.mean, served.std))
        latency_ms = (time.perf_counter() - start) * 1000
        probs = softmax(logits)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top]
        predictions = [
            [{"class": served.class_names[i], "index": int(i), "probability": float(p[i])} for i in row] for row, p in zip(order, probs)
        ]
        return {"model": served.name, "role": served.role, "latency_ms": round(latency_ms, 3), "predictions": predictions}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(models))

    @app.get("/metrics")
    async def prometheus() -> Response:
        content, media = metrics.exposition()
        return Response(content, media_type=media)

    app.state.metrics = metrics
    app.state.batchers = batchers
    return app


async def _raw_input(request: Request, model: ServedModel, max_batch: int) -> np.ndarray:
    """The raw-scale batch a /predict request carries: a multipart upload, an image body or JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InferError("the multipart form has no file field named 'file'")
        return image_to_raw(await upload.read(), model.input_shape)
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


class LimitsAndMetrics:
    """ASGI middleware: refuse bodies over ``max_body`` bytes (413, JSON) and time every request.

    The body is read here, up to the limit, and replayed to the app, so neither a large
    ``Content-Length`` nor a chunked body without one can make the server hold more than the limit.
    """

    def __init__(self, app, max_body: int, metrics: ServerMetrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await error(413, f"the request body is over the limit of {self.max_body} bytes")(scope, receive, send_status)
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: wait for the disconnect

            await self.app(scope, replay, send_status)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "other"), status["code"], time.perf_counter() - start)

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None as soon as it is known to exceed the limit."""
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return None
                except ValueError:
                    pass
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
