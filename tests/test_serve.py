"""`distil serve`: a real uvicorn server on 127.0.0.1 around a tiny digits run, spoken to over HTTP.

The Open Inference Protocol checks use tritonclient, a standard OIP client, unchanged; predictions
are compared with the run's model rebuilt locally in PyTorch.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import ThreadedServer, digit_png, local_logits, local_model, tiny_run

from distil.data import load_dataset
from distil.errors import ModelError
from distil.serve import BatchSettings, FeedbackWriter, ServedModel, ServeSettings, create_app, load_models
from distil.serve.repository import export_onnx

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def run():
    return tiny_run()


@pytest.fixture(scope="module")
def models(run):
    return load_models(run, "onnxruntime")


@pytest.fixture(scope="module")
def server(models):
    with ThreadedServer(create_app(models, ServeSettings(max_body_bytes=LIMIT))) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


def samples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8)).astype(np.float32)


def oip_json(x: np.ndarray, **extra) -> dict:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}], **extra}


def test_run_dir_gives_student_and_teacher_with_metadata(models, run):
    student, teacher = models
    data = json.loads((run / "summary.json").read_text())["data"]
    assert (student.name, student.role, teacher.name, teacher.role) == ("student", "student", "teacher", "teacher")
    assert student.backend.name == "onnxruntime" and "exported" in student.info  # no compressed/ yet: exported at start
    assert (
        list(student.class_names) == data["class_names"]
        and list(student.mean) == data["mean"]
        and list(student.input_shape) == data["input_shape"]
    )
    torch_models = load_models(run, "torch")
    assert torch_models[0].backend.name == "torch" and torch_models[0].metadata()["parameters"]["runtime"] == "torch"


def test_health_and_metadata(http):
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    meta = http.get("/v2/models/student").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
    assert meta["platform"] == "onnxruntime_onnx" and meta["parameters"]["method"] == "kd"
    assert http.get("/v2/models/teacher/ready").status_code == 200


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, True), (True, False), (False, True)])
def test_standard_oip_client_matches_local_model(server, run, binary_in, binary_out):
    import tritonclient.http as triton

    x = samples(5, seed=int(binary_in) * 2 + int(binary_out))
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_model_ready("student")
        assert client.get_model_metadata("student")["name"] == "student"
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary_in)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("logits", "probabilities")]
        for name in ("student", "teacher"):
            result = client.infer(name, [tensor], outputs=outputs, request_id="r1")
            expected = local_logits(local_model(run, name), x)
            np.testing.assert_allclose(result.as_numpy("logits"), expected, atol=1e-4)
            np.testing.assert_allclose(result.as_numpy("probabilities").sum(1), 1, atol=1e-5)
            assert result.get_response()["id"] == "r1"
        versioned = client.infer("student", [tensor], model_version="1")
        np.testing.assert_allclose(versioned.as_numpy("logits"), local_logits(local_model(run), x), atol=1e-4)
    finally:
        client.close()


def test_raw_http_binary_extension(http, run):
    """The binary extension by hand: JSON header, then raw bytes; binary_data_output for all outputs."""
    x = samples(3, seed=7)
    header = json.dumps(
        {
            "inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = http.post("/v2/models/student/infer", content=header + x.tobytes(), headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    length = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    logits = np.frombuffer(r.content[length : length + sizes[0]], dtype="<f4").reshape(3, 10)
    np.testing.assert_allclose(logits, local_logits(local_model(run), x), atol=1e-4)
    assert len(r.content) == length + sum(sizes)


def test_predict_png_upload_and_json_match_local(http, run, models):
    png, pixels = digit_png(3)
    student = models[0]
    x = ((pixels - student.mean[0]) / student.std[0]).reshape(1, 1, 8, 8).astype(np.float32)
    expected = local_logits(local_model(run), x)[0]
    probs = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    for response in (
        http.post("/predict", files={"file": ("d.png", png, "image/png")}, params={"k": 3}),
        http.post("/predict", content=png, headers={"content-type": "image/png"}, params={"k": 3}),
        http.post("/predict", json=pixels.tolist(), params={"k": 3}),
        http.post("/predict", json={"data": pixels[None].tolist()}, params={"k": 3}),
    ):
        assert response.status_code == 200, response.text
        top = response.json()["predictions"][0]
        assert [p["index"] for p in top] == list(np.argsort(-probs)[:3])
        assert top[0]["class"] == student.class_names[int(np.argmax(probs))]
        assert top[0]["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
    teacher = http.post("/predict", files={"file": ("d.png", png, "image/png")}, params={"model": "teacher"}).json()
    assert teacher["role"] == "teacher" and len(teacher["predictions"][0]) == 5 and teacher["latency_ms"] > 0
    # the model's own compute, apart from decoding the upload and waiting in the queue
    assert 0 < teacher["compute_ms"] <= teacher["latency_ms"] and teacher["queue_ms"] >= 0 and teacher["decode_ms"] > 0 and teacher["batch"] == 1


def test_bare_onnx_file_with_and_without_sidecar(tmp_path, run, models):
    exported = export_onnx(local_model(run), (1, 8, 8))
    assert exported is not None
    path = tmp_path / "model.onnx"
    shutil.copy(exported.path, path)
    (bare,) = load_models(path)
    assert bare.class_names == tuple(str(k) for k in range(10)) and bare.input_shape == (1, 8, 8) and bare.mean == ()
    data = json.loads((run / "summary.json").read_text())["data"] | {"class_names": list("abcdefghij")}
    (tmp_path / "model.json").write_text(json.dumps({"data": data}))
    (described,) = load_models(path, name="digits")
    assert described.name == "digits" and described.class_names[0] == "a" and described.mean == models[0].mean


INFER = "/v2/models/student/infer"
GOOD = samples(1)


def binary_request(declared: int, sent: int) -> dict:
    header = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "parameters": {"binary_data_size": declared}}]}
    ).encode()
    return {"content": header + GOOD.tobytes()[:sent], "headers": {"Inference-Header-Content-Length": str(len(header))}}


BAD = {
    "wrong shape": ("POST", INFER, {"json": oip_json(GOOD.reshape(1, 1, 4, 16))}, 400, "shape"),
    "wrong datatype": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT32", "data": [0] * 64}]}},
        400,
        "datatype",
    ),
    "string data": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ["a"] * 64}]}},
        400,
        "numbers",
    ),
    "too few values": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 63}]}},
        400,
        "63 values",
    ),
    "wrong input name": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]}},
        400,
        "unknown input",
    ),
    "unknown output": ("POST", INFER, {"json": oip_json(GOOD, outputs=[{"name": "features"}])}, 400, "unknown output"),
    "binary shorter than declared": ("POST", INFER, binary_request(256, 200), 400, "shorter than the declared"),
    "binary size not the shape's": ("POST", INFER, binary_request(128, 128), 400, "needs 256 bytes"),
    "header length past the body": (
        "POST",
        INFER,
        {"content": b"{}", "headers": {"Inference-Header-Content-Length": "99"}},
        400,
        "body has 2 bytes",
    ),
    "not JSON": ("POST", INFER, {"content": b"\x00\x01garbage"}, 400, "invalid inference request"),
    "no inputs": ("POST", INFER, {"json": {"id": "1"}}, 400, "inputs"),
    "unknown model": ("POST", "/v2/models/resnet/infer", {"json": oip_json(GOOD)}, 404, "unknown model"),
    "unknown model metadata": ("GET", "/v2/models/resnet", {}, 404, "unknown model"),
    "unknown version": ("POST", "/v2/models/student/versions/7/infer", {"json": oip_json(GOOD)}, 404, "no version"),
    "body over the limit": ("POST", INFER, {"content": b"x" * (LIMIT + 1)}, 413, "over the limit"),
    "chunked body over the limit": ("POST", INFER, {"content": iter([b"x" * (LIMIT // 2)] * 3)}, 413, "over the limit"),
    "upload over the limit": (
        "POST",
        "/predict",
        {"files": {"file": ("big.png", b"\x89PNG" + b"0" * LIMIT, "image/png")}},
        413,
        "over the limit",
    ),
    "non-image upload": ("POST", "/predict", {"files": {"file": ("notes.png", b"these are not pixels", "image/png")}}, 415, "not an image"),
    "non-image body": ("POST", "/predict", {"content": b"GIF89a?", "headers": {"content-type": "image/gif"}}, 415, "not an image"),
    "form without file": ("POST", "/predict", {"files": {"image": ("a.png", b"x", "image/png")}}, 400, "no file field"),
    "url-encoded form": ("POST", "/predict", {"data": {"text": "hello"}}, 415, "unsupported content type"),
    "text body": ("POST", "/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
    "predict wrong shape": ("POST", "/predict", {"json": [[1, 2, 3]]}, 400, "shape"),
    "predict ragged": ("POST", "/predict", {"json": [[1, 2], [3]]}, 400, "ragged"),
    "predict unknown model": ("POST", "/predict", {"json": GOOD[0].tolist(), "params": {"model": "nope"}}, 404, "unknown model"),
    "predict bad k": ("POST", "/predict", {"json": GOOD[0].tolist(), "params": {"k": "many"}}, 422, "k"),
    "unknown route": ("GET", "/v3/models", {}, 404, "no route"),
    "wrong method": ("DELETE", "/v2/models/student/infer", {}, 405, "not allowed"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_gets_4xx_json_and_server_stays_up(http, case):
    method, path, kwargs, status, words = BAD[case]
    response = http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    assert http.get("/v2/health/live").status_code == 200


class SlowBackend:
    """A model that takes ``seconds`` per batch (or fails): for queueing, timeouts and batching."""

    name = "test"
    platform = "test"
    input_name = "input"
    input_shape = (1, 8, 8)

    def __init__(self, seconds: float = 0.0, fail: bool = False) -> None:
        self.seconds, self.fail, self.batches = seconds, fail, []

    def predict(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("the model broke")
        self.batches.append(len(x))
        return np.tile(x.reshape(len(x), -1)[:, :10], 1)


def slow_server(
    backend: SlowBackend, batch: BatchSettings, timeout_s: float = 10.0, feedback: FeedbackWriter | None = None, max_in_flight: int = 1024
) -> ThreadedServer:
    model = ServedModel("slow", backend, tuple(str(k) for k in range(10)), (0.5,), (0.25,))
    return ThreadedServer(create_app([model], ServeSettings(batch=batch, timeout_s=timeout_s, max_in_flight=max_in_flight), feedback))


def post_many(url: str, n: int, path: str = "/v2/models/slow/infer") -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=20) as client, ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: client.post(path, json=oip_json(samples(1, seed=i))), range(n)))


def test_full_queue_answers_503_json():
    with slow_server(SlowBackend(0.3), BatchSettings(max_batch=1, max_delay_ms=0, queue_size=1)) as server:
        responses = post_many(server.url, 8)
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, codes
    assert all("queue" in r.json()["error"] for r in responses if r.status_code == 503)


def test_requests_beyond_the_in_flight_cap_answer_503_json_and_the_rest_succeed():
    with slow_server(SlowBackend(0.3), BatchSettings(max_batch=8, max_delay_ms=0), max_in_flight=3) as server:
        responses = post_many(server.url, 8)
        assert httpx.get(server.url + "/v2/health/live").status_code == 200  # answered once the burst is over
    codes = [r.status_code for r in responses]
    assert codes.count(200) >= 3 and 503 in codes and set(codes) <= {200, 503}, codes
    assert all("in flight" in r.json()["error"] for r in responses if r.status_code == 503)


def test_timeout_answers_504_and_model_failure_500_json():
    with slow_server(SlowBackend(0.5), BatchSettings(), timeout_s=0.05) as server:
        r = httpx.post(server.url + "/v2/models/slow/infer", json=oip_json(samples(1)))
        assert r.status_code == 504 and "timed out" in r.json()["error"]
    with slow_server(SlowBackend(fail=True), BatchSettings()) as server:
        r = httpx.post(server.url + "/v2/models/slow/infer", json=oip_json(samples(1)))
        assert r.status_code == 500 and "the model broke" in r.json()["error"]
        assert httpx.get(server.url + "/v2/health/live").status_code == 200


def test_requests_are_batched_and_answered_in_order():
    backend = SlowBackend(0.05)
    with slow_server(backend, BatchSettings(max_batch=4, max_delay_ms=100, queue_size=64)) as server:
        responses = post_many(server.url, 8)
        metrics = httpx.get(server.url + "/metrics").text
    for i, r in enumerate(responses):  # each request gets its own rows back
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], samples(1, seed=i).ravel()[:10], atol=1e-6)
    assert max(backend.batches) > 1 and max(backend.batches) <= 4 and sum(backend.batches) == 8
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    batch = {s.name: s.value for s in families["distil_batch_size"].samples if not s.labels.get("le")}
    assert batch["distil_batch_size_sum"] == 8 and batch["distil_batch_size_count"] == len(backend.batches)


def test_metrics_are_prometheus_text(http):
    http.post(INFER, json=oip_json(GOOD))
    http.get("/v2/models/nope")
    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    assert {
        "distil_requests",
        "distil_request_errors",
        "distil_request_duration_seconds",
        "distil_batch_size",
        "distil_queue_depth",
    } <= set(families)
    requests = {
        (s.labels["route"], s.labels["code"]): s.value for s in families["distil_requests"].samples if s.name == "distil_requests_total"
    }
    assert requests[("/v2/models/{name}/infer", "200")] >= 1 and requests[("/v2/models/{name}", "404")] >= 1
    depth = {s.labels["model"]: s.value for s in families["distil_queue_depth"].samples}
    assert depth == {"student": 0, "teacher": 0}


def test_feedback_capture_respects_cap_and_is_a_transfer_set(tmp_path):
    writer = FeedbackWriter(tmp_path / "fb", tuple(str(k) for k in range(10)), (1, 8, 8), (0.5,), (0.25,), max_samples=5, shard_size=2)
    with slow_server(SlowBackend(), BatchSettings(max_delay_ms=0), feedback=writer) as server:
        sent = [samples(2, seed=i) for i in range(4)]
        for x in sent:
            assert httpx.post(server.url + "/v2/models/slow/infer", json=oip_json(x)).status_code == 200
    shards = sorted((tmp_path / "fb").glob("shard-*.npz"))
    assert writer.written == 5 and len(shards) == 3
    data = load_dataset("transfer", path=tmp_path / "fb", val_size=1)
    assert len(data.train) + len(data.val) + len(data.test) == 5 and data.class_names == tuple(str(k) for k in range(10))
    with np.load(shards[0]) as first:
        np.testing.assert_allclose(first["x"], sent[0] * 0.25 + 0.5, atol=1e-6)  # stored at raw scale
        assert first["y"].tolist() == sent[0].reshape(2, -1)[:, :10].argmax(1).tolist()
    again = FeedbackWriter(tmp_path / "fb", tuple(str(k) for k in range(10)), (1, 8, 8), max_samples=5)
    assert again.written == 5 and again.add(samples(1), np.zeros(1, np.int64)) == []  # the cap holds across restarts


def compressed_copy(tmp_path, run, int8_drop: float) -> tuple:
    """A copy of the run with compress-like rows: two ONNX files of the student (fp32, "int8" = the same graph,
    faster on paper and ``int8_drop`` less accurate), a pruned ONNX row 2 points worse but fastest, and a
    torch-int8 row that cannot be served (as `distil compress` leaves them)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    exported = export_onnx(local_model(run), (1, 8, 8))
    (copy / "compressed").mkdir()
    summary = json.loads((copy / "summary.json").read_text())
    kd = next(m for m in summary["models"] if m["name"] == "student_kd")
    acc = kd["accuracy"]
    for name, weights, method, accuracy, b1 in (
        ("student_kd.onnx", "compressed/student_kd.onnx", "onnx", acc, 0.05),
        ("student_kd.onnx-int8", "compressed/student_kd.int8.onnx", "onnx-int8", acc - int8_drop, 0.04),
        ("student_kd.pruned.onnx", "compressed/student_kd.pruned.onnx", "onnx", acc - 0.02, 0.02),
        ("student_kd.pruned.int8", "compressed/student_kd.pruned.int8.safetensors", "int8", acc - 0.02, 0.01),
    ):
        shutil.copy(exported.path, copy / weights)
        runtime = "torch-int8" if method == "int8" else "onnxruntime"
        summary["models"].append({"name": name, "role": "student", "method": method, "arch": "mlp", "source": "student_kd", "runtime": runtime,
                                  "accuracy": accuracy, "params": 123, "size_bytes": 4567, "latency_ms_b1": b1, "weights": weights})
    (copy / "summary.json").write_text(json.dumps(summary))
    return copy, acc


def test_served_row_is_chosen_by_the_rule_and_reports_its_own_numbers(tmp_path, run):
    copy, acc = compressed_copy(tmp_path, run, int8_drop=0.004)
    student = load_models(copy)[0]
    params = student.metadata()["parameters"]
    # the fastest ONNX row within half a point of the best student: the "int8" one, with its own numbers
    assert params["row"] == "student_kd.onnx-int8" and student.info["weights"] == str(copy / "compressed" / "student_kd.int8.onnx")
    assert (params["method"], params["accuracy"], params["latency_ms_b1"], params["measured_runtime"]) == ("onnx-int8", acc - 0.004, 0.04, "onnxruntime")
    assert "within 0.5 point" in params["selected_by"] and params["best_student"]["row"] in ("student_kd", "student_kd.onnx")
    assert "exported" not in params
    chosen = load_models(copy, row="student_kd.onnx")[0].metadata()["parameters"]
    assert (chosen["row"], chosen["method"], chosen["selected_by"]) == ("student_kd.onnx", "onnx", "--model student_kd.onnx")
    with pytest.raises(ModelError, match="cannot be served.*servable student rows: student_kd, student_kd.onnx"):
        load_models(copy, row="student_kd.pruned.int8")
    with pytest.raises(ModelError, match="is not a row"):
        load_models(copy, row="nope")
    assert load_models(copy, "torch")[0].metadata()["parameters"]["row"] == "student_kd"  # torch: the run's own student


def test_a_variant_beyond_the_tolerance_or_not_claiming_speed_is_not_served(tmp_path, run):
    copy, acc = compressed_copy(tmp_path, run, int8_drop=0.006)
    params = load_models(copy)[0].metadata()["parameters"]
    assert (params["row"], params["accuracy"]) == ("student_kd.onnx", acc)
    summary = json.loads((copy / "summary.json").read_text())
    for m in summary["models"]:
        if m["name"] == "student_kd.onnx-int8":  # within tolerance again, but compress says it is not faster
            m["accuracy"], m["speedup"] = acc, {"over": "student_kd.onnx", "b1": 1.1, "b256": 0.9, "claimed": False}
    (copy / "summary.json").write_text(json.dumps(summary))
    assert load_models(copy)[0].metadata()["parameters"]["row"] == "student_kd.onnx"


def test_serve_command_reports_user_errors(tmp_path, run):
    from typer.testing import CliRunner

    from distil.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "no summary.json" in result.output
    result = runner.invoke(app, ["serve", str(run), "--model-name", "teacher"])
    assert result.exit_code == 2 and "clashes" in result.output
