"""The Open Inference Protocol v2 REST routes (KServe/Triton): server and model metadata, health, infer.

A model has numbered versions (1: the run's own; 2, 3, ...: ``distil loop``'s promotions); the plain
routes answer from the newest, the ``/versions/{version}`` forms from that version, which is ready
while it is loaded (the newest few are; see :mod:`distil.serve.state`). Tensors are parsed and encoded (JSON or binary) by
:mod:`distil.serve.protocol`; the model's input (:mod:`distil.serve.inputs`) turns the tensor into
its batch — a text model's BYTES strings are tokenized there.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from distil.serve.protocol import HEADER_LENGTH, InferError, encode_response, parse_infer
from distil.serve.state import ServeState


def add_oip_routes(app: FastAPI, state: ServeState) -> None:
    """Add the ``/v2`` routes answering from ``state``."""

    @app.get("/v2")
    async def server_metadata() -> dict:
        from distil import __version__

        return {"name": "distil", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def server_ready() -> Response:
        return JSONResponse({"ready": state.ready}, status_code=200 if state.ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict:
        return state.model(name, version).metadata() | {"versions": state.version_list(name)}

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        try:
            model = state.model(name, version)
        except InferError as err:
            if err.status != 503:
                raise
            return JSONResponse({"name": name, "version": version, "ready": False, "error": str(err)}, status_code=503)
        return JSONResponse({"name": name, "version": model.version, "ready": state.ready}, status_code=200 if state.ready else 503)

    async def infer(request: Request) -> Response:
        model = state.model(request.path_params["name"], request.path_params.get("version"))
        body = await request.body()
        parsed = parse_infer(body, request.headers.get(HEADER_LENGTH), model.inputs.name, model.inputs.datatype, model.output_names)
        batch = await state.prepare(model.inputs.from_oip, model, parsed.values, parsed.shape, state.settings.limits)
        logits, _, ids = await state.timed_logits(model, batch)
        extra = {"feedback_ids": ids} if ids else None  # captured inputs: POST /feedback {"id", "label"} corrects one
        content, headers = encode_response(model.name, parsed.id, parsed.outputs, model.outputs(batch, logits), model.version, extra)
        media = headers.pop("content-type")
        return Response(content, media_type=media, headers=headers)

    # The hot path: plain Starlette routes, first in the table. FastAPI's parameter solving and
    # validation cost about a quarter of the app's time per request here (benchmarks/serve/README.md);
    # the two path parameters are strings, so there is nothing for it to validate.
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        app.router.routes.insert(0, _PlainRoute(path, infer, methods=["POST"]))


class _PlainRoute(Route):
    """A Starlette route that, like FastAPI's, names itself in the scope (``scope["route"]``): the
    request metrics are labelled by the route's path template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match != Match.NONE:
            child["route"] = self
        return match, child
