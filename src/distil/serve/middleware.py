"""The ASGI middleware around every request: the cap on requests in flight, the body-size limit and the request metrics."""

from __future__ import annotations

import time

from distil.serve.json_errors import error
from distil.serve.metrics import ServerMetrics


class LimitsAndMetrics:
    """ASGI middleware: refuse requests beyond ``max_in_flight`` at once (503, JSON, before the body is
    read), bodies over ``max_body`` bytes (413, JSON), and time every request.

    The body is read here, up to the limit, and replayed to the app, so neither a large
    ``Content-Length`` nor a chunked body without one can make the server hold more than the limit.
    Connections are capped by uvicorn (``limit_concurrency``, set above ``max_in_flight`` so that
    this JSON answer comes first).
    """

    def __init__(self, app, max_body: int, metrics: ServerMetrics, max_in_flight: int = 1024) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}
        if self.in_flight >= self.max_in_flight:
            status["code"] = 503
            await error(503, f"the server has {self.max_in_flight} requests in flight already; retry later")(scope, receive, send)
            self.metrics.observe("other", 503, time.perf_counter() - start)
            return
        self.in_flight += 1

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
            self.in_flight -= 1
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
