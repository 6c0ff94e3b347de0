"""`distil serve` on a language-model run: ONNX (KV cache) export checked against PyTorch, OIP BYTES prompts
and /predict generating text, the page, and 4xx JSON for bad prompts."""

import copy
import json

import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from test_lm_run import TINY
from typer.testing import CliRunner

from distil.cli import app
from distil.compress.lm_export import OnnxLM, export_lm_onnx
from distil.models.causal_lm import build_causal_lm
from distil.models.generate import generate
from distil.serve.lm_app import LMServeSettings, create_lm_app, load_lm_models
from distil.weights import load_weights

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm-serve")
    raw = copy.deepcopy(TINY)
    raw["methods"] = ["data", "fkl"]
    raw["onnx"] = True  # the run exports its models with their KV cache and times them under ONNX Runtime
    (folder / "c.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run", str(folder / "c.yaml"), "--out", str(folder / "out")])
    assert result.exit_code == 0, result.output
    return folder / "out"


def test_onnx_export_with_kv_cache_matches_torch(tmp_path):
    model = build_causal_lm("gpt", vocab_size=60, context_length=20, seed=0, width=16, depth=2, heads=2).eval()
    onnx = OnnxLM(export_lm_onnx(model, tmp_path / "lm.onnx"))
    x = torch.randint(1, 60, (3, 5))
    assert torch.allclose(onnx(x), model(x), atol=1e-5)  # prefill from an empty cache (P = 0)
    a, past = onnx.step(x[:, :2])
    b, _ = onnx.step(x[:, 2:], past)  # several new tokens against a cache
    assert torch.allclose(torch.cat([a, b], 1), model(x), atol=1e-5)
    assert torch.equal(generate(onnx, x, 12), generate(model, x, 12))


def test_serve_generates_text(run_dir):
    models = load_lm_models(run_dir, "onnxruntime")
    assert [m.name for m in models] == ["teacher", "student_fkl"] and {m.backend for m in models} == {"onnxruntime"}
    assert (run_dir / "onnx" / "student_fkl.onnx").is_file()
    rows = json.loads((run_dir / "summary.json").read_text())["models"]
    assert all(row["tokens_per_s"]["onnx_greedy_b1"] > 0 for row in rows)
    reference = build_causal_lm("gpt", vocab_size=300, context_length=24, **TINY["student"]["kwargs"])
    load_weights(reference, run_dir / "student_fkl.safetensors").eval()
    tok = models[0].tokenizer
    ids = torch.tensor([tok.encode(["And God said"])[0]])
    expected = tok.decode(generate(reference, ids, 5)[0, ids.shape[1] :])
    with TestClient(create_lm_app(models, LMServeSettings(max_tokens=10))) as client:
        r = client.post("/predict", json={"text": "And God said", "max_tokens": 5})
        assert r.status_code == 200 and r.json()["text"] == expected and r.json()["tokens"] == 5 and r.json()["model"] == "student_fkl"
        request = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [2], "data": ["And God said", "In the"]}], "parameters": {"max_tokens": 5}}
        r = client.post("/v2/models/student_fkl/infer", json=request)
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert r.status_code == 200 and out["text"]["data"][0] == expected and out["tokens"]["data"] == [5, 5]
        teacher = client.post("/predict", json={"text": "And God said", "max_tokens": 5, "model": "teacher", "temperature": 1.0})
        assert teacher.status_code == 200 and teacher.json()["tokens_per_s"] > 0
        assert "student_fkl" in client.get("/").text and client.get("/v2/models/teacher").json()["parameters"]["role"] == "teacher"
        bad = {
            "empty prompt": (client.post("/predict", json={"text": "  "}), 400, "prompt is empty"),
            "too many tokens": (client.post("/predict", json={"text": "And", "max_tokens": 11}), 400, "between 1 and 10"),
            "past the context": (client.post("/predict", json={"text": "And God said " * 10, "max_tokens": 5}), 400, "context of 24 tokens"),
            "bad temperature": (client.post("/predict", json={"text": "And", "temperature": -1}), 400, "temperature"),
            "no text": (client.post("/predict", json={"prompt": "And"}), 400, '"text"'),
            "unknown model": (client.post("/v2/models/nope/infer", json=request), 404, "unknown model"),
            "FP32 prompt": (client.post("/v2/models/teacher/infer", json={"inputs": [{"name": "prompt", "datatype": "FP32", "shape": [1], "data": [1.0]}]}), 400, "BYTES"),
        }
        for what, (response, status, message) in bad.items():
            assert response.status_code == status, what
            assert message in response.json()["error"], (what, response.json())
        assert client.post("/predict", json={"text": "And", "max_tokens": 2}).status_code == 200  # still answering
    json.loads((run_dir / "summary.json").read_text())  # the run is untouched
