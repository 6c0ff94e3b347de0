"""The routes of teachable mode (:mod:`distil.serve.teachable`): the page at ``/teach`` and its HTTP API.

``POST /teach/classes {"classes": [...]}`` (2..N names; resets the examples), ``POST /teach/examples``
(multipart: ``file`` an image, ``label`` a class name), ``POST /teach/train`` (202; 409 while a job
runs), ``GET /teach/status`` (stage, progress, warnings, the served version). The trained student is
served as ``teachable`` (``/predict?model=teachable``, ``/v2/models/teachable``); every finished
Train adds a version.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from distil.serve.backends import OnnxBackend
from distil.serve.images import image_to_raw
from distil.serve.protocol import InferError
from distil.serve.repository import ServedModel
from distil.serve.state import ServeState
from distil.serve.teachable import Teachable

NAME = "teachable"


@cache
def _page() -> str:
    return files("distil.serve").joinpath("teachable.html").read_text(encoding="utf-8")


def add_teachable_routes(app: FastAPI, state: ServeState, teach: Teachable) -> None:
    @app.get("/teach", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page().replace("__SHAPE__", json.dumps(list(teach.input_shape))))

    @app.post("/teach/classes")
    async def classes(request: Request) -> dict:
        body = await _json(request)
        return {"classes": list(teach.set_classes(body.get("classes") if isinstance(body, dict) else None))}

    @app.post("/teach/examples")
    async def examples(request: Request) -> dict:
        form = await request.form(max_files=1, max_fields=4)
        upload, label = form.get("file"), form.get("label")
        if upload is None or isinstance(upload, str) or not isinstance(label, str):
            raise InferError("send a multipart form with an image in 'file' and its class name in 'label'", 422)
        raw = image_to_raw(await upload.read(), teach.input_shape)[0]
        return {"counts": teach.add_example(raw, label)}

    @app.post("/teach/train")
    async def train() -> JSONResponse:
        loop = asyncio.get_running_loop()

        def serve(path, class_names, info) -> str:
            version = str(int(state.newest.get(NAME, "0")) + 1)
            model = ServedModel(NAME, OnnxBackend(path), tuple(class_names), teach.mean, teach.std, "student", info, version=version)

            async def add() -> None:
                state.add_version(model, new_name=True)

            asyncio.run_coroutine_threadsafe(add(), loop).result(30)
            return version

        status = teach.start(serve)
        return JSONResponse(status.as_dict(), status_code=202)

    @app.get("/teach/status")
    async def status() -> dict:
        return teach.status.as_dict() | {"classes": list(teach.classes), "counts": teach.counts()}


async def _json(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InferError(f"the body is not valid JSON: {err}") from None
