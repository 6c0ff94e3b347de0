"""Versioned serving: OIP model versions, a hot swap under load that fails no request, the localhost
admin reload with a token, unloading old versions, and metrics per version."""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import ThreadedServer, local_logits, local_model, tiny_run

from distil.compress.export import export_onnx
from distil.serve import ServeSettings, create_app, load_models
from distil.session.versions import ONNX, SUMMARY, versions_dir

INFER = "/v2/models/student/infer"


def oip(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}


def promote(run, number: int, seed: int) -> torch.nn.Module:
    """Write ``versions/NUMBER`` as `distil loop` does (ONNX, then summary.json last): the run's student
    with its output layer perturbed by ``seed``, so each version answers differently."""
    model = local_model(run)
    with torch.no_grad():
        last = [p for p in model.parameters()][-1]
        last.add_(torch.randn(last.shape, generator=torch.Generator().manual_seed(seed)))
    folder = versions_dir(run) / str(number)
    folder.mkdir(parents=True)
    export_onnx(model, (1, 8, 8), folder / ONNX, exporter="torchscript")
    row = {"name": f"student.v{number}", "role": "student", "method": "loop", "arch": "mlp", "runtime": "onnxruntime", "accuracy": 0.5 + number / 100,
           "params": 1234, "size_bytes": (folder / ONNX).stat().st_size, "latency_ms_b1": 0.01, "weights": f"versions/{number}/{ONNX}"}  # fmt: skip
    (folder / SUMMARY).write_text(json.dumps({"version": number, "row": row, "loop": {"old": {"test": 0.5}, "new": {"test": 0.51}}}))
    return model.eval()


@pytest.fixture
def run(tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run(), copy)
    return copy


def test_hot_swap_under_load_fails_no_request_and_versions_answer_as_themselves(run):
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    settings = ServeSettings(poll_s=0.05)
    with ThreadedServer(create_app(load_models(run, "torch"), settings, watch=run)) as server:
        stop, answers = threading.Event(), []

        def client() -> None:
            with httpx.Client(base_url=server.url, timeout=20) as c:
                while not stop.is_set():
                    r = c.post(INFER, json=oip(x))
                    answers.append((r.status_code, r.json().get("model_version")))

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(client)
            time.sleep(0.3)
            v2 = promote(run, 2, seed=1)
            deadline = time.monotonic() + 10
            while httpx.get(server.url + "/v2/models/student").json()["versions"] != ["1", "2"] and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
        codes = {code for code, _ in answers}
        assert codes == {200}, codes  # zero failed requests across the swap
        versions = [v for _, v in answers]
        assert "1" in versions and "2" in versions and versions.index("2") > 0
        meta = httpx.get(server.url + "/v2/models/student").json()
        assert meta["versions"] == ["1", "2"] and meta["parameters"]["row"] == "student.v2" and meta["parameters"]["accuracy"] == 0.52
        new = httpx.post(server.url + INFER, json=oip(x)).json()
        old = httpx.post(server.url + "/v2/models/student/versions/1/infer", json=oip(x)).json()
        assert (new["model_version"], old["model_version"]) == ("2", "1")
        np.testing.assert_allclose(new["outputs"][0]["data"], local_logits(v2, x).ravel(), atol=1e-4)
        np.testing.assert_allclose(old["outputs"][0]["data"], local_logits(local_model(run), x).ravel(), atol=1e-4)
        assert httpx.get(server.url + "/v2/models/student/versions/2/ready").json()["ready"] is True
        assert httpx.get(server.url + "/v2/models/student/versions/9/ready").status_code == 404
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)}
        answered = {s.labels["version"]: s.value for s in families["distil_inference_samples"].samples if s.name.endswith("_total")}
        assert answered["1"] > 0 and answered["2"] > 0
        assert next(s.value for s in families["distil_version_swaps"].samples if s.name.endswith("_total")) == 1


def test_admin_reload_needs_the_token_and_old_versions_unload(run):
    promote(run, 2, seed=1)  # promoted before the server starts: served from the start, the newest
    settings = ServeSettings(poll_s=3600, admin_token="s3cret", keep_versions=2, timeout_s=0.2)
    with ThreadedServer(create_app(load_models(run, "torch"), settings, watch=run)) as server:
        assert httpx.get(server.url + "/v2/models/student").json()["versions"] == ["1", "2"]
        promote(run, 3, seed=2)
        assert httpx.post(server.url + "/admin/reload").status_code == 401
        assert httpx.post(server.url + "/admin/reload", headers={"authorization": "Bearer nope"}).status_code == 401
        r = httpx.post(server.url + "/admin/reload", headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json() == {"added": ["3"], "versions": ["1", "2", "3"], "newest": "3"}
        (versions_dir(run) / "4").mkdir()  # half-written: no summary.json, not a version
        assert httpx.post(server.url + "/admin/reload", headers={"authorization": "Bearer s3cret"}).json()["added"] == []
        time.sleep(1.5)  # version 1 is unloaded after the grace (timeout + 1 s): keep_versions = 2
        ready = httpx.get(server.url + "/v2/models/student/versions/1/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        gone = httpx.post(server.url + "/v2/models/student/versions/1/infer", json=oip(np.zeros((1, 1, 8, 8), np.float32)))
        assert gone.status_code == 503 and "unloaded" in gone.json()["error"]
        assert httpx.get(server.url + "/v2/models/student").json()["versions"] == ["1", "2", "3"]
    with ThreadedServer(create_app(load_models(run, "torch"), ServeSettings(), watch=run)) as server:  # no token: no admin route
        assert httpx.post(server.url + "/admin/reload").status_code == 404
