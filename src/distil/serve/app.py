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

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response

from distil.serve.feedback import FeedbackWriter, TextFeedbackWriter
from distil.serve.json_errors import add_error_handlers
from distil.serve.metrics import ServerMetrics
from distil.serve.middleware import LimitsAndMetrics
from distil.serve.oip_routes import add_oip_routes
from distil.serve.predict_routes import add_predict_routes
from distil.serve.repository import ServedModel
from distil.serve.state import ServeSettings, ServeState


def create_app(models: list[ServedModel], settings: ServeSettings | None = None, feedback: FeedbackWriter | TextFeedbackWriter | None = None) -> FastAPI:
    """The app serving ``models`` (the first is the main one: /predict's default, feedback's source)."""
    state = ServeState(models, settings or ServeSettings(), feedback)
    app = FastAPI(title="distil serve", lifespan=_lifespan(state), docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitsAndMetrics, max_body=state.settings.max_body_bytes, metrics=state.metrics)
    add_error_handlers(app)
    add_oip_routes(app, state)
    add_predict_routes(app, state)
    _add_metrics_route(app, state.metrics)
    app.state.metrics = state.metrics
    app.state.batchers = state.batchers
    return app


def _lifespan(state: ServeState) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Batchers run (and the server answers ready) while the app runs; at shutdown feedback is flushed."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await state.stop()

    return lifespan


def _add_metrics_route(app: FastAPI, metrics: ServerMetrics) -> None:
    """``GET /metrics``: the Prometheus text exposition of this app's own registry."""

    @app.get("/metrics")
    async def prometheus() -> Response:
        content, media = metrics.exposition()
        return Response(content, media_type=media)
