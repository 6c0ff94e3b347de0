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
    target: Annotated[Path | None, typer.Argument(help="a run directory (distil run --out DIR) or a MODEL.onnx file; optional with --teachable")] = None,
    host: Annotated[str, typer.Option(help="address to bind; 127.0.0.1 keeps the server local")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8080,
    model_name: Annotated[str, typer.Option(help="the student's name in /v2/models/{name}")] = "student",
    row: Annotated[
        str | None,
        typer.Option("--model", help="the summary row to serve (e.g. student_kd.onnx); default: the fastest ONNX row within 0.5 point of the best student"),
    ] = None,
    runtime: Annotated[Runtime, typer.Option(help="onnxruntime (an .onnx from compressed/ or exported at start), or torch")] = Runtime.onnxruntime,
    max_batch: Annotated[int, typer.Option(min=1, help="samples per forward pass")] = 32,
    max_delay_ms: Annotated[float, typer.Option(min=0, help="how long a batch waits to fill (0: a batch is what queued during the last one)")] = 0.0,
    inline_ms: Annotated[float, typer.Option(min=0, help="run a batch on the event loop (no thread hand-off) while the last took under this many ms; 0: never")] = 0.0,
    queue_size: Annotated[int, typer.Option(min=1, help="requests waiting per model; beyond it 503")] = 256,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="request body limit; beyond it 413")] = 8.0,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="per-request limit in queue and model; beyond it 504")] = 10.0,
    feedback: Annotated[Path | None, typer.Option(help="capture served inputs into this transfer-set folder (off by default)")] = None,
    feedback_max: Annotated[int, typer.Option(min=1, help="feedback cap: samples")] = 10_000,
    feedback_max_mb: Annotated[float, typer.Option(min=0.001, help="feedback cap: MB of inputs")] = 256.0,
    max_text_bytes: Annotated[int, typer.Option(min=1, help="text models: UTF-8 bytes per text; beyond it 413")] = 10_000,
    max_in_flight: Annotated[int, typer.Option(min=1, help="requests handled at once; beyond it 503 (connections: twice this)")] = 1024,
    teachable: Annotated[bool, typer.Option("--teachable", help="teachable mode: a page at /teach to name classes, add examples and train a student on the run's frozen teacher")] = False,
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="serve the versions `distil loop` promotes into RUN/versions as they appear")] = True,
    keep_versions: Annotated[int, typer.Option(min=1, help="versions kept loaded; older ones answer 503")] = 3,
    admin_token: Annotated[
        str | None, typer.Option(envvar="DISTIL_ADMIN_TOKEN", help="enables POST /admin/reload (localhost only, Authorization: Bearer TOKEN)")
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="language-model runs: the most tokens one request may generate")] = 64,
) -> None:
    """Serve a run's student (and teacher) over the Open Inference Protocol v2, with /predict and a page at /."""
    import uvicorn

    from distil.errors import ConfigError
    from distil.serve.lm_app import is_lm_run
    from distil.serve.translation import is_translation_run

    lm, translation = target is not None and is_lm_run(target), target is not None and is_translation_run(target)
    if lm or translation:
        given = [flag for flag, on in (("--teachable", teachable), ("--feedback", feedback is not None), ("--model", row is not None), ("--admin-token", admin_token is not None)) if on]
        if given:
            raise ConfigError(f"{', '.join(given)}: not available for a {'language-model' if lm else 'translation'} run ({target}) yet; serve it without")
    if lm:  # a language-model run: prompts in, generated text out
        return serve_lm(target, host, port, None if model_name == "student" else model_name, runtime.value, max_tokens)

    if translation:  # a kind: translation run: text in, translation out (distil.serve.translation)
        from distil.serve.translation import create_translation_app, load_translators

        translators = load_translators(target, runtime.value, model_name)
        for t in translators:
            err.print(f"{t.name}: {t.role} ({t.method}), {t.runtime}, beam {t.beam}, from {t.info['weights']}", highlight=False)
        err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict, /metrics)", highlight=False)
        uvicorn.run(create_translation_app(translators, max_text_bytes, int(max_body_mb * 2**20)), host=host, port=port, log_level="warning")
        return

    from distil.serve import BatchSettings, ServeSettings, create_app, feedback_writer, load_models

    if target is None and not teachable:
        raise ConfigError("give a run directory or a MODEL.onnx file to serve (or --teachable to teach a model from scratch)")
    if target is None and feedback is not None:
        raise ConfigError("--feedback captures what a served model answers: give the run directory or MODEL.onnx to serve")
    models = load_models(target, runtime.value, model_name, row) if target is not None else []
    writer = feedback_writer(models[0], feedback, feedback_max, int(feedback_max_mb * 2**20)) if feedback is not None else None
    settings = ServeSettings(
        BatchSettings(max_batch, max_delay_ms, queue_size, inline_ms), int(max_body_mb * 2**20), timeout_s, max_text_bytes=max_text_bytes,
        keep_versions=keep_versions, admin_token=admin_token, max_in_flight=max_in_flight,
    )  # fmt: skip
    for m in models:
        takes = f"text ({m.input.description['tokenizer']} tokenizer)" if m.is_text else f"input {list(m.input_shape)}"
        err.print(f"{m.name}: {m.role}, {m.backend.name}, {takes}, {m.num_classes} classes, from {m.info.get('weights', m.info.get('source'))}", highlight=False)
        if "row" in m.info:
            acc = m.info.get("accuracy")
            err.print(f"  row {m.info['row']} ({m.info.get('method')}, accuracy {acc if acc is None else f'{100 * acc:.2f} %'}): {m.info['selected_by']}", highlight=False)
    err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict, /metrics)", highlight=False)
    watched = target if watch and target is not None and target.is_dir() else None
    teach = None
    if teachable:
        from distil.serve.teachable import DEFAULT_CONFIG, teachable_from_config, teachable_from_run

        teach = teachable_from_run(target) if target is not None else teachable_from_config(DEFAULT_CONFIG)
        backbone = f"the teacher of {target}" if target is not None else f"{DEFAULT_CONFIG}'s teacher"
        err.print(f"teachable mode: http://{host}:{port}/teach ({backbone} is the frozen backbone)", highlight=False)
    uvicorn.run(create_app(models, settings, writer, watched, teach), host=host, port=port, log_level="warning", limit_concurrency=2 * max_in_flight)


def serve_lm(target: Path, host: str, port: int, student: str | None, runtime: str, max_tokens: int) -> None:
    """``distil serve`` on a ``kind: lm`` run: the teacher and one student (``--model-name`` METHOD; default the
    distilled student with the lowest held-out perplexity) generate text."""
    import uvicorn

    from distil.serve.lm_app import LMServeSettings, create_lm_app, load_lm_models

    models = load_lm_models(target, runtime, student)
    for m in models:
        err.print(f"{m.name}: {m.role}, {m.backend}, context {m.model.max_length}, {m.model.vocab_size} tokens", highlight=False)
    err.print(f"serving on http://{host}:{port}/ (Open Inference Protocol v2 under /v2, /predict)", highlight=False)
    uvicorn.run(create_lm_app(models, LMServeSettings(max_tokens)), host=host, port=port, log_level="warning")
