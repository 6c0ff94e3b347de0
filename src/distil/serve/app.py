"""The HTTP app: Open Inference Protocol v2 REST, ``/predict`` for people, a web page, ``/metrics``.

``create_app(models, settings)`` builds a FastAPI app around already-loaded :class:`ServedModel` s;
``distil serve`` runs it with uvicorn. Every error — a bad tensor, an unknown model or route, a
wrong method, a body over the limit, a full queue, a timeout, a model failure — is answered with a
non-200 status and a JSON body ``{"error": "..."}``, never plain text: OIP clients parse the body.

The parts: :class:`ServeState` (state.py) is what the routes share; the OIP routes
(oip_routes.py), ``/predict`` and the page (predict_routes.py), the JSON error handlers
(json_errors.py) and the body-limit + metrics middleware (middleware.py) are each added here.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

from distil.serve.feedback import FeedbackWriter, TextFeedbackWriter
from distil.serve.json_errors import add_error_handlers
from distil.serve.metrics import ServerMetrics
from distil.serve.middleware import LimitsAndMetrics
from distil.serve.oip_routes import add_oip_routes
from distil.serve.predict_routes import add_predict_routes
from distil.serve.protocol import InferError
from distil.serve.repository import ServedModel
from distil.serve.state import ServeSettings, ServeState
from distil.serve.teachable import Teachable
from distil.serve.teachable_routes import add_teachable_routes
from distil.serve.watch import VersionWatcher


def create_app(
    models: list[ServedModel],
    settings: ServeSettings | None = None,
    feedback: FeedbackWriter | TextFeedbackWriter | None = None,
    watch: Path | None = None,
    teachable: Teachable | None = None,
) -> FastAPI:
    """The app serving ``models`` (the first is the main one: /predict's default, feedback's source).

    ``watch``: the run directory whose promoted versions (``distil loop``) are served as they appear
    (:class:`~distil.serve.watch.VersionWatcher`; the ones already there before the server answers ready).
    ``teachable``: teachable mode's state; adds the page at ``/teach`` and its API (:mod:`distil.serve.teachable_routes`).
    """
    state = ServeState(models, settings or ServeSettings(), feedback)
    watcher = VersionWatcher(state, watch, state.settings.poll_s) if watch is not None else None
    app = FastAPI(title="distil serve", lifespan=_lifespan(state, watcher), docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitsAndMetrics, max_body=state.settings.max_body_bytes, metrics=state.metrics, max_in_flight=state.settings.max_in_flight)
    add_error_handlers(app)
    add_oip_routes(app, state)
    add_predict_routes(app, state)
    _add_metrics_route(app, state.metrics)
    if teachable is not None:
        add_teachable_routes(app, state, teachable)
    if watcher is not None and state.settings.admin_token:
        _add_admin_route(app, watcher, state.settings.admin_token)
    app.state.metrics = state.metrics
    app.state.serve = state
    return app


def _lifespan(state: ServeState, watcher: VersionWatcher | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Batchers run (and the server answers ready) while the app runs; at shutdown feedback is flushed.
    With a watcher, the versions already promoted are loaded before ready, then watched for."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start(ready=watcher is None)
        task = None
        try:
            if watcher is not None:
                await watcher.scan()
                state.ready = True
                task = asyncio.create_task(watcher.run())
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await state.stop()

    return lifespan


def _add_admin_route(app: FastAPI, watcher: VersionWatcher, token: str) -> None:
    """``POST /admin/reload``: look for promoted versions now; from localhost only, with ``Authorization: Bearer TOKEN``."""

    @app.post("/admin/reload")
    async def reload(request: Request) -> dict:
        client = request.client.host if request.client else ""
        if client not in ("127.0.0.1", "::1", "localhost"):
            raise InferError("the admin endpoint answers localhost only", 403)
        if not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            raise InferError("a valid admin token is required (Authorization: Bearer TOKEN)", 401)
        added = await watcher.scan()
        return {"added": added, "versions": watcher.state.version_list(watcher.state.main), "newest": watcher.state.newest[watcher.state.main]}


def _add_metrics_route(app: FastAPI, metrics: ServerMetrics) -> None:
    """``GET /metrics``: the Prometheus text exposition of this app's own registry."""

    @app.get("/metrics")
    async def prometheus() -> Response:
        content, media = metrics.exposition()
        return Response(content, media_type=media)
