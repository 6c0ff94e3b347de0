"""``distil serve``: a run's student over HTTP (Open Inference Protocol v2, /predict, a page)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from distil.cli.app import app, err, user_errors


class Runtime(str, Enum):
    onnxruntime = "onnxruntime"
    torch = "torch"


@app.command()
@user_errors
def serve(
    target: Annotated[Path, typer.Argument(help="a run directory (distil run --out DIR) or a MODEL.onnx file")],
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps the server local")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    model_name: Annotated[str, typer.Option(help="the student's name in /v2/models/{name}")] = "student",
    runtime: Annotated[Runtime, typer.Option(help="onnxruntime (an .onnx from compressed/ or exported at start), or torch")] = Runtime.onnxruntime,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 32,
    max_delay_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits to fill")] = 2.0,
    queue_size: Annotated[int, typer.Option(min=1, help="requests waiting per model; beyond it 503")] = 256,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="request body limit; beyond it 413")] = 8.0,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="per-request limit in queue and model; beyond it 504")] = 10.0,
    feedback: Annotated[Path | None, typer.Option(help="capture served inputs into this transfer-set folder (off by default)")] = None,
    feedback_max: Annotated[int, typer.Option(min=1, help="feedback cap: samples")] = 10_000,
    feedback_max_mb: Annotated[float, typer.Option(min=0.001, help="feedback cap: MB of inputs")] = 256.0,
    max_text_bytes: Annotated[int, typer.Option(min=1, help="text models: UTF-8 bytes per text; beyond it 413")] = 10_000,
) -> None:
    """Serve a run's student (and teacher) over the Open Inference Protocol v2, with /predict and a page at /."""
    import uvicorn

    from distil.serve.translation import is_translation_run

    if is_translation_run(target):  # a kind: translation run: text in, translation out (distil.serve.translation)
        from distil.serve.translation import create_translation_app, load_translators

        translators = load_translators(target, runtime.value, model_name)
        for t in translators:
            err.print(f"{t.name}: {t.role} ({t.method}), {t.runtime}, beam {t.beam}, from {t.info['weights']}", highlight=False)
        err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict, /metrics)", highlight=False)
        uvicorn.run(create_translation_app(translators, max_text_bytes, int(max_body_mb * 2**20)), host=host, port=port, log_level="warning")
        return
    from distil.serve import BatchSettings, ServeSettings, create_app, feedback_writer, load_models

    models = load_models(target, runtime.value, model_name)
    writer = feedback_writer(models[0], feedback, feedback_max, int(feedback_max_mb * 2**20)) if feedback is not None else None
    settings = ServeSettings(BatchSettings(max_batch, max_delay_ms, queue_size), int(max_body_mb * 2**20), timeout_s, max_text_bytes=max_text_bytes)
    for m in models:
        takes = f"text ({m.input.description['tokenizer']} tokenizer)" if m.is_text else f"input {list(m.input_shape)}"
        err.print(f"{m.name}: {m.role}, {m.backend.name}, {takes}, {m.num_classes} classes, from {m.info.get('weights', m.info.get('source'))}", highlight=False)
    err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict, /metrics)", highlight=False)
    uvicorn.run(create_app(models, settings, writer), host=host, port=port, log_level="warning")
