"""``distil serve`` on a language-model run (``kind: lm``): text in, generated text out.

Routes (every error is ``{"error": ...}`` with a 4xx/5xx status, as for the classifiers):

* ``POST /v2/models/{name}/infer`` — Open Inference Protocol v2: one BYTES input ``prompt`` (one or more
  prompts), request ``parameters`` ``max_tokens`` and ``temperature``; outputs ``text`` (BYTES, the
  continuation of each prompt) and ``tokens`` (INT64, how many were generated);
* ``GET /v2/models/{name}``, ``GET /v2/health/live|ready``, ``GET /v2/models``;
* ``POST /predict`` — JSON ``{"text", "max_tokens"?, "temperature"?, "model"?}`` → ``{"model", "text",
  "tokens", "tokens_per_s"}``;
* ``GET /`` — a page with a prompt box that shows every served model's continuation and its tokens/s
  side by side (teacher and student).

Refused with 400: an empty prompt, ``max_tokens`` below 1 or above ``max_tokens`` (the server's limit),
a temperature below 0, a prompt whose tokens plus ``max_tokens`` pass the model's context length.
Models run under ONNX Runtime (the run's ``gpt`` models exported with their KV cache at start,
:mod:`distil.compress.lm_export`) or PyTorch.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from distil.compress.lm_export import OnnxLM, export_lm_onnx
from distil.config.lm import LMExperimentConfig
from distil.data.text.cache import data_cache_dir
from distil.data.text.lm import LMTokenizer
from distil.errors import ConfigError
from distil.models.causal_lm import build_causal_lm
from distil.models.generate import generate
from distil.models.gpt import GPT
from distil.pretrained import is_pretrained_spec
from distil.serve.json_errors import add_error_handlers
from distil.serve.protocol import HEADER_LENGTH, InferError, encode_response, parse_infer
from distil.weights import load_weights

DEFAULT_MAX_TOKENS = 32


@dataclass
class ServedLM:
    """One served causal LM: its name, role, runnable model (torch or ONNX) and the run's tokenizer."""

    name: str
    role: str
    model: Any
    tokenizer: LMTokenizer
    backend: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": self.backend,
            "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}, {"name": "tokens", "datatype": "INT64", "shape": [-1]}],
            "parameters": {"role": self.role, "context_length": self.model.max_length, "vocab_size": self.model.vocab_size},
        }


@dataclass(frozen=True)
class LMServeSettings:
    max_tokens: int = 64  # the most tokens one request may ask for


def is_lm_run(target: str | Path) -> bool:
    summary = Path(target) / "summary.json"
    try:
        return summary.is_file() and json.loads(summary.read_text()).get("kind") == "lm"
    except (OSError, ValueError):
        return False


def run_tokenizer(run_dir: Path, summary: dict[str, Any]) -> LMTokenizer:
    """The run's tokenizer: ``DIR/tokenizer.json``, else the learnt one in the data cache with the summary's sha256."""
    if (run_dir / "tokenizer.json").is_file():
        return LMTokenizer(summary["data"]["tokenizer"], run_dir)
    sha = summary["data"]["tokenizer_sha256"]
    for file in sorted((data_cache_dir() / "lm_tokenizers").glob("*/tokenizer.json")):
        tok = LMTokenizer(summary["data"]["tokenizer"], file.parent)
        if tok.sha256 == sha:
            return tok
    raise ConfigError(f"{run_dir}: no tokenizer.json, and no cached tokenizer with sha256 {sha[:12]}…: run the experiment again")


def load_lm_models(run_dir: str | Path, runtime: str = "onnxruntime", student: str | None = None) -> list[ServedLM]:
    """The run's teacher and one student (``student``: a method name; default the distilled student with
    the lowest held-out perplexity), on ONNX Runtime (exported at start) or torch."""
    import yaml

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    config = LMExperimentConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    tokenizer = run_tokenizer(run_dir, summary)
    rows = {m["method"]: m for m in summary["models"] if m["role"] == "student"}
    if student is None:
        distilled = [m for m in rows.values() if m["method"] != "data"] or list(rows.values())
        student = min(distilled, key=lambda m: m["test_nll"])["method"]
    if student not in rows:
        raise ConfigError(f"--model-name: the run has students {', '.join(rows)}, not {student!r}")
    served = []
    for name, section, role in (("teacher", config.teacher, "teacher"), (f"student_{student}", config.student, "student")):
        spec, kwargs = section.model, section.kwargs
        if is_pretrained_spec(spec):  # a trained Hugging Face model is the run's folder DIR/NAME/; a given one its own
            spec, kwargs = (f"hf:{run_dir / name}" if (run_dir / name).is_dir() else spec), {}
        model = build_causal_lm(spec, vocab_size=summary["data"]["vocab_size"], context_length=summary["data"]["context_length"], **kwargs)
        if not is_pretrained_spec(spec):
            load_weights(model, run_dir / f"{name}.safetensors")
        model.eval()
        backend = "torch"
        if runtime == "onnxruntime" and isinstance(model, GPT):
            path = run_dir / "onnx" / f"{name}.onnx"
            if not path.is_file():
                path.parent.mkdir(exist_ok=True)
                export_lm_onnx(model, path)
            model, backend = OnnxLM(path), "onnxruntime"
        served.append(ServedLM(name, role, model, tokenizer, backend))
    return served


def _prompt_ids(lm: ServedLM, text: str, max_tokens: int, settings: LMServeSettings) -> torch.Tensor:
    if not text.strip():
        raise InferError("the prompt is empty; send some text to continue")
    if not 1 <= max_tokens <= settings.max_tokens:
        raise InferError(f"max_tokens must be between 1 and {settings.max_tokens}, got {max_tokens}")
    ids = lm.tokenizer.encode([text])[0]
    if len(ids) + max_tokens - 1 > lm.model.max_length:
        raise InferError(
            f"the prompt is {len(ids)} tokens; with max_tokens {max_tokens} that passes {lm.name}'s context of {lm.model.max_length} tokens"
        )
    return torch.tensor([ids])


def _options(max_tokens: Any, temperature: Any) -> tuple[int, float]:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise InferError(f"max_tokens must be an integer, got {max_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise InferError(f"temperature must be a number ≥ 0 (0: greedy), got {temperature!r}")
    return max_tokens, float(temperature)


async def _continue(lm: ServedLM, text: str, max_tokens: int, temperature: float, settings: LMServeSettings) -> tuple[str, int, float]:
    ids = _prompt_ids(lm, text, max_tokens, settings)
    async with lm.lock:
        started = time.perf_counter()
        out = await run_in_threadpool(generate, lm.model, ids, max_tokens, temperature=temperature)
        seconds = time.perf_counter() - started
    new = out[0, ids.shape[1] :]
    return lm.tokenizer.decode(new), int(new.numel()), new.numel() / max(seconds, 1e-9)


def create_lm_app(models: list[ServedLM], settings: LMServeSettings | None = None) -> FastAPI:
    """The app serving ``models`` (teacher and student; the last is /predict's default)."""
    settings = settings or LMServeSettings()
    by_name = {m.name: m for m in models}
    default = models[-1]
    app = FastAPI(title="distil serve (language model)", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)

    def model(name: str) -> ServedLM:
        if name not in by_name:
            raise InferError(f"unknown model {name!r}; served: {', '.join(by_name)}", 404)
        return by_name[name]

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict[str, bool]:
        return {"live": True, "ready": True}

    @app.get("/v2/models")
    async def listing() -> dict[str, Any]:
        return {"models": [m.metadata() for m in models]}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict[str, Any]:
        return model(name).metadata()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        lm = model(name)
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        parsed = parse_infer(body, header_length, "prompt", "BYTES", ("text", "tokens"))
        header = body[: int(header_length)] if header_length else body
        params = json.loads(header).get("parameters") or {}
        max_tokens, temperature = _options(params.get("max_tokens", DEFAULT_MAX_TOKENS), params.get("temperature", 0.0))
        texts, counts = [], []
        for value in parsed.values:
            try:
                prompt = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InferError("the prompt is not UTF-8 text") from None
            text, n, _ = await _continue(lm, prompt, max_tokens, temperature, settings)
            texts.append(text)
            counts.append(n)
        tensors = {"text": np.array(texts, dtype=object).reshape(parsed.shape), "tokens": np.array(counts, dtype=np.int64).reshape(parsed.shape)}
        payload, headers = encode_response(name, parsed.id, parsed.outputs, tensors)
        return Response(payload, headers=headers)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise InferError('send JSON: {"text": "...", "max_tokens": 32, "temperature": 0}') from None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise InferError('send JSON with a "text" string: {"text": "In the beginning"}')
        lm = model(body.get("model", default.name))
        max_tokens, temperature = _options(body.get("max_tokens", DEFAULT_MAX_TOKENS), body.get("temperature", 0.0))
        text, n, speed = await _continue(lm, body["text"], max_tokens, temperature, settings)
        return JSONResponse({"model": lm.name, "text": text, "tokens": n, "tokens_per_s": speed})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.replace("__MODELS__", json.dumps([m.name for m in models])).replace("__MAX__", str(settings.max_tokens)).replace(
            "__TITLE__", html.escape(", ".join(f"{m.name} ({m.backend})" for m in models))
        )

    return app


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>distil serve: language model</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}textarea{width:100%;height:4em}
.out{display:flex;gap:1em}.out div{flex:1;border:1px solid #ccc;padding:.5em;white-space:pre-wrap}</style></head><body>
<h1>distil serve</h1><p>__TITLE__</p>
<textarea id="prompt">In the beginning</textarea><br>
max tokens <input id="max" type="number" value="32" min="1" max="__MAX__"> temperature <input id="temp" type="number" value="0" min="0" step="0.1">
<button id="go">Continue</button>
<div class="out" id="out"></div>
<script>
const models = __MODELS__;
document.getElementById('go').onclick = async () => {
  const out = document.getElementById('out'); out.innerHTML = '';
  for (const m of models) {
    const box = document.createElement('div'); box.textContent = m + ': …'; out.appendChild(box);
    const r = await fetch('/predict', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({
      model: m, text: document.getElementById('prompt').value, max_tokens: +document.getElementById('max').value,
      temperature: +document.getElementById('temp').value})});
    const j = await r.json();
    box.textContent = r.ok ? `${m} (${j.tokens_per_s.toFixed(0)} tokens/s)\\n\\n${j.text}` : `${m}: ${j.error}`;
  }
};
</script></body></html>
"""
