"""``distil serve`` on a translation run: text in, translation out.

A translation run directory (``distil run`` with ``kind: translation``) holds the two tokenizers, the
weights and ``summary.json``. :func:`load_translators` rebuilds the served student (sequence-level KD
when the run has it, else its last student) and the teacher; with ``runtime="onnxruntime"`` (default)
each is exported at start-up as an encoder and a decoder step (:mod:`distil.compress.seq2seq_export`,
under ``RUN/onnx/<name>/``) and kept only if its greedy translations of the run's example test
sentences are token-for-token PyTorch's.

Routes (every error is JSON ``{"error": ...}`` with a 4xx/5xx status, as the other serve apps):

* ``POST /v2/models/{name}/infer`` — Open Inference Protocol v2: one input of datatype ``BYTES``, shape
  ``[n]``, ``n`` sentences → output ``translation`` (``BYTES``, ``[n]``);
* ``GET /v2/health/live|ready``, ``GET /v2/models/{name}`` (metadata), ``GET /v2/models``;
* ``POST /predict`` — ``{"text": "..."}`` (or a list, a form field, text/plain) → every model's translation
  with its latency, the greedy student first; an empty text is 400, a text past ``max_text_bytes`` 413;
  a sentence past the run's ``max_length`` tokens is cut and the answer says so (``truncated``), and
  characters the vocabulary never saw are counted (``unknown_tokens``);
* ``GET /`` — a page: a text box, and the teacher's and the student's translations with their latencies.

Requests are translated one call at a time in a worker thread (no dynamic batching here).
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from torch import nn

from distil.compress.seq2seq_export import OnnxSeq2Seq, export_seq2seq, seq2seq_parity
from distil.config.translation import TranslationConfig, served_student
from distil.data.text.subwords import UNK_ID, Vocab
from distil.errors import ConfigError
from distil.models.seq2seq_decode import decode
from distil.serve.json_errors import add_error_handlers
from distil.serve.metrics import ServerMetrics
from distil.serve.middleware import LimitsAndMetrics
from distil.serve.protocol import InferError
from distil.serve.texts import request_texts
from distil.session.run_dir import CONFIG, SUMMARY
from distil.weights import load_weights

RUNTIMES = ("onnxruntime", "torch")


@dataclass
class Translator:
    """One served model: the two vocabularies, the model (PyTorch or the ONNX pair) and how it decodes."""

    name: str
    role: str
    method: str
    model: Any  # nn.Module or OnnxSeq2Seq: both have encode / decode
    runtime: str
    source_vocab: Vocab
    target_vocab: Vocab
    max_length: int
    beam: int = 1
    alpha: float = 0.6
    info: dict[str, Any] = field(default_factory=dict)

    def translate(self, texts: list[str]) -> list[dict[str, Any]]:
        """Each text translated alone (batch 1: the latency a user sees), with what was cut or unknown."""
        out = []
        for text in texts:
            tokens = self.source_vocab.encode([text], self.max_length)
            start = time.perf_counter()
            with torch.inference_mode():
                ids = decode(self.model, tokens.ids, beam=self.beam, alpha=self.alpha, max_len=self.max_length)
            ms = 1000 * (time.perf_counter() - start)
            out.append({"model": self.name, "role": self.role, "runtime": self.runtime, "beam": self.beam, "translation": self.target_vocab.decode(ids)[0],
                        "latency_ms": round(ms, 2), "truncated": bool(tokens.truncated), "unknown_tokens": int((tokens.ids == UNK_ID).sum())})  # fmt: skip
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name, "versions": ["1"], "platform": self.runtime,
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "translation", "datatype": "BYTES", "shape": [-1]}],
            "parameters": {"role": self.role, "method": self.method, "beam": self.beam, "max_length": self.max_length, **self.info},
        }


def is_translation_run(target: str | Path) -> bool:
    summary = Path(target) / SUMMARY
    if not summary.is_file():
        return False
    try:
        return json.loads(summary.read_text()).get("kind") == "translation"
    except (OSError, ValueError):
        return False


def _rebuild(run: Path, row: dict[str, Any], cfg: TranslationConfig, sv: int, tv: int) -> nn.Module:
    model = cfg.build_model(row, sv, tv)
    load_weights(model, run / row["weights"], row.get("sha256"))
    return model.eval()


def load_translators(run: str | Path, runtime: str = "onnxruntime", student_name: str = "student", beam: int = 5) -> list[Translator]:
    """The served student (greedy) and the teacher (beam ``beam``) of a translation run (see the module doc)."""
    run = Path(run)
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    summary = json.loads((run / SUMMARY).read_text())
    import yaml

    cfg = TranslationConfig.model_validate(yaml.safe_load((run / CONFIG).read_text()))
    source_vocab = Vocab.from_file(run / summary["tokenizers"]["source"])
    target_vocab = Vocab.from_file(run / summary["tokenizers"]["target"])
    rows = {m["name"]: m for m in summary["models"]}
    student = served_student(summary["models"])
    if student is None:
        raise ConfigError(f"{run}: the translation run has no student to serve")
    examples = [e["source"] for e in summary.get("examples", [])] or ["In the beginning God created the heaven and the earth."]
    served = []
    for row, name, width in ((student, student_name, 1), (rows.get("teacher"), "teacher", beam)):
        if row is None:
            continue
        model = _rebuild(run, row, cfg, source_vocab.size, target_vocab.size)
        info: dict[str, Any] = {"weights": row["weights"]}
        backend: Any = model
        if runtime == "onnxruntime":
            folder = export_seq2seq(model, run / "onnx" / row["name"], source_vocab.encode(examples, cfg.data.max_length).ids)[0].parent
            backend = OnnxSeq2Seq(folder)
            check = seq2seq_parity(model, backend, source_vocab.encode(examples, cfg.data.max_length).ids)
            if check.same_translation < 1.0:
                raise ConfigError(f"{row['name']}: the ONNX encoder + decoder step translate {100 * (1 - check.same_translation):.0f} % of the example sentences differently from PyTorch (max logit difference {check.max_abs_diff}); serve with --runtime torch")
            info["parity"] = check.as_dict()
        served.append(Translator(name, row["role"], row["method"], backend, runtime, source_vocab, target_vocab, cfg.data.max_length, width, cfg.evaluate.length_penalty, info))
    return served


def _check_texts(texts: list[str], max_bytes: int) -> list[str]:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InferError(f"text {i}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise InferError(f"text {i} is empty; send a sentence to translate")
        if len(text.encode("utf-8")) > max_bytes:
            raise InferError(f"text {i} has {len(text.encode('utf-8'))} UTF-8 bytes, over the server's limit of {max_bytes}", 413)
    return texts


def create_translation_app(translators: list[Translator], max_text_bytes: int = 10_000, max_body_bytes: int = 1 << 20) -> FastAPI:
    """The app serving ``translators`` (the first: /predict's main model, the OIP default)."""
    by_name = {t.name: t for t in translators}
    metrics = ServerMetrics()
    app = FastAPI(title="distil serve (translation)", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitsAndMetrics, max_body=max_body_bytes, metrics=metrics)
    add_error_handlers(app)

    def model(name: str) -> Translator:
        if name not in by_name:
            raise InferError(f"no model {name!r}; served: {', '.join(by_name)}", 404)
        return by_name[name]

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health() -> dict:
        return {"live": True, "ready": True}

    @app.get("/v2/models")
    async def models() -> dict:
        return {"models": [t.metadata() for t in translators]}

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> dict:
        return model(name).metadata()

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> dict:
        translator = model(name)
        try:
            payload = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as err:
            raise InferError(f"the body is not valid JSON: {err}") from None
        inputs = payload.get("inputs") if isinstance(payload, dict) else None
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise InferError('expected {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [n], "data": ["...", ...]}]}')
        entry = inputs[0]
        if entry.get("datatype") != "BYTES":
            raise InferError(f"input {entry.get('name')!r}: datatype {entry.get('datatype')!r}; a translation model takes BYTES (UTF-8 sentences)")
        data = entry.get("data")
        if not isinstance(data, list) or not data:
            raise InferError(f"input {entry.get('name')!r}: data must be a non-empty list of strings")
        shape = entry.get("shape")
        if shape not in ([len(data)], [len(data), 1]):
            raise InferError(f"input {entry.get('name')!r}: shape {shape} does not match {len(data)} strings")
        texts = _check_texts(data, max_text_bytes)
        results = await run_in_threadpool(translator.translate, texts)
        return {
            "model_name": translator.name, "model_version": "1", "id": payload.get("id", ""),
            "outputs": [{"name": "translation", "datatype": "BYTES", "shape": [len(results)], "data": [r["translation"] for r in results]}],
            "parameters": {"latency_ms": [r["latency_ms"] for r in results], "truncated": [r["truncated"] for r in results], "unknown_tokens": [r["unknown_tokens"] for r in results]},
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict:
        texts = _check_texts(await request_texts(request), max_text_bytes)
        if len(texts) != 1:
            raise InferError("/predict translates one text at a time; send {\"text\": \"...\"}")
        answers = [(await run_in_threadpool(t.translate, texts))[0] for t in translators]
        first = answers[0]
        notes = []
        if first["truncated"]:
            notes.append(f"the sentence is longer than {translators[0].max_length} tokens: only its first {translators[0].max_length} were translated")
        if first["unknown_tokens"]:
            notes.append(f"{first['unknown_tokens']} piece(s) of the sentence are unknown to the vocabulary (read as [UNK])")
        return {"text": texts[0], "translation": first["translation"], "model": first["model"], "translations": answers,
                "truncated": first["truncated"], "unknown_tokens": first["unknown_tokens"], "notes": notes}  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("{{models}}", html.escape(", ".join(f"{t.name} ({t.role}, beam {t.beam}, {t.runtime})" for t in translators))))

    @app.get("/metrics")
    async def prometheus():
        from fastapi.responses import Response

        content, media = metrics.exposition()
        return Response(content, media_type=media)

    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>distil serve: translation</title>
<style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em}textarea{width:100%;height:5em}
table{border-collapse:collapse;margin-top:1em;width:100%}td,th{border-bottom:1px solid #eee;padding:.4em;text-align:left}.err{color:#b00}.meta{color:#666}</style></head>
<body><h1>Translate</h1><p class="meta">models: {{models}}</p>
<form id="f"><textarea id="text" name="text">In the beginning God created the heaven and the earth.</textarea><br><button type="submit">Translate</button></form>
<div id="out"></div>
<script>
document.getElementById('f').addEventListener('submit', async (e) => {
  e.preventDefault();
  const out = document.getElementById('out');
  const r = await fetch('/predict', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({text: document.getElementById('text').value})});
  const j = await r.json();
  if (!r.ok) { out.innerHTML = ''; const p = document.createElement('p'); p.className = 'err'; p.id = 'error'; p.textContent = j.error; out.appendChild(p); return; }
  const t = document.createElement('table'); t.id = 'translations';
  t.innerHTML = '<tr><th>model</th><th>translation</th><th>latency</th></tr>';
  for (const a of j.translations) {
    const row = t.insertRow(); row.className = 'row-' + a.role;
    row.insertCell().textContent = a.model + ' (' + a.role + ', beam ' + a.beam + ')';
    row.insertCell().textContent = a.translation;
    row.insertCell().textContent = a.latency_ms.toFixed(1) + ' ms';
  }
  out.innerHTML = ''; out.appendChild(t);
  for (const n of j.notes) { const p = document.createElement('p'); p.className = 'meta'; p.textContent = n; out.appendChild(p); }
});
</script></body></html>
"""
