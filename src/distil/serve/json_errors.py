"""Errors as JSON: every non-200 answer of the server is ``{"error": "..."}``, never plain text.

OIP clients parse the body of an error too, so a bad tensor, an unknown model or route, a wrong
method, a full queue, a timeout and a model failure all get a status and this body.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from distil.serve.batching import QueueFull
from distil.serve.protocol import InferError

log = logging.getLogger("distil.serve")


def error(status: int, message: str) -> JSONResponse:
    """The answer to any failed request: ``status`` and ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every exception a route can raise (and Starlette's 404/405/422) with :func:`error`."""

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
