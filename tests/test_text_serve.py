"""`distil serve` on a text run: a real uvicorn server around a tiny text run (TextCNN teacher,
bag-of-embeddings student, the packaged MiniLM tokenizer), spoken to over HTTP.

Raw UTF-8 strings go in as an OIP BYTES tensor — JSON, and the binary extension both by hand and
through tritonclient unchanged — or to /predict as JSON, a form field or a text/plain body; the
server tokenizes with the run's tokenizer. Answers are compared with the run's models rebuilt in
PyTorch from the dataset (its own tokenizer and vocabulary), not through the server's code.
Bad input gets a 4xx JSON error and the server keeps answering. Feedback is a text transfer set.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serve_helpers import (
    ThreadedServer,
    local_word_tags,
    text_logits,
    text_reference,
    tiny_run,
    tiny_tagger_run,
    tiny_text_run,
)
from text_helpers import polar_sentences

from distil.data import load_dataset
from distil.data.unlabeled import load_unlabeled
from distil.errors import ModelError
from distil.serve import BatchSettings, ServeSettings, TextFeedbackWriter, create_app, feedback_writer, load_models

MAX_TEXT = 200
INFER = "/v2/models/student/infer"
SENTENCES = ["the film was wonderful", "the plot was dull and the ending too", "a superb cast, a charming script and beautiful music"]


@pytest.fixture(scope="module")
def run():
    return tiny_text_run()


@pytest.fixture(scope="module")
def reference(run):
    return text_reference(run)


@pytest.fixture(scope="module")
def models(run):
    return load_models(run, "onnxruntime")


@pytest.fixture(scope="module")
def server(models):
    settings = ServeSettings(batch=BatchSettings(max_batch=8, max_delay_ms=20), max_text_bytes=MAX_TEXT)
    with ThreadedServer(create_app(models, settings)) as s:
        yield s


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


def oip_text(texts: list[str], name: str = "text", **extra) -> dict:
    return {"inputs": [{"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": texts}], **extra}


def bytes_tensor(elements: list[bytes]) -> bytes:
    """The binary form of a BYTES tensor (KServe/Triton binary extension): per element a 4-byte little-endian length, then the bytes."""
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def binary_request(elements: list[bytes], shape: list[int] | None = None, blob: bytes | None = None, **parameters) -> dict:
    """An infer request with ``elements`` as a binary BYTES tensor (or ``blob`` as its binary data)."""
    blob = bytes_tensor(elements) if blob is None else blob
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": shape or [len(elements)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "parameters": parameters,
        }
    ).encode()
    return {"content": header + blob, "headers": {"Inference-Header-Content-Length": str(len(header))}}


def test_text_run_serves_student_and_teacher_with_bytes_metadata(models, run, http):
    student, teacher = models
    assert (student.role, teacher.role) == ("student", "teacher") and student.is_text and teacher.is_text
    assert student.input is teacher.input  # one tokenizer for both
    text = json.loads((run / "summary.json").read_text())["data"]["text"]
    meta = http.get("/v2/models/student").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": n, "datatype": "FP32", "shape": [-1, 2]} for n in ("logits", "probabilities")]
    assert meta["parameters"]["text"]["tokenizer_sha256"] == text["tokenizer_sha256"] and meta["parameters"]["class_names"] == [
        "neg",
        "pos",
    ]
    assert meta["parameters"]["runtime"] in ("onnxruntime", "torch")  # ONNX once the exporter takes token ids, PyTorch until then
    assert http.get("/v2/models/teacher/ready").json() == {"name": "teacher", "version": "1", "ready": True}


def test_oip_json_bytes_match_the_local_models(http, reference):
    data, local = reference
    for name in ("student", "teacher"):
        r = http.post(f"/v2/models/{name}/infer", json=oip_text(SENTENCES, id="t1"))
        assert r.status_code == 200, r.text
        body = r.json()
        logits = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(body["outputs"][0]["shape"])
        np.testing.assert_allclose(logits, text_logits(data, local[name], SENTENCES), atol=1e-4)
        assert body["id"] == "t1" and body["outputs"][1]["name"] == "probabilities"
    nested = http.post(
        INFER, json={"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [[SENTENCES[0]], [SENTENCES[1]]]}]}
    )
    assert nested.status_code == 200 and nested.json()["outputs"][0]["shape"] == [2, 2]


@pytest.mark.parametrize("binary_in,binary_out", [(True, True), (True, False), (False, True), (False, False)])
def test_tritonclient_sends_bytes_unchanged(server, reference, binary_in, binary_out):
    import tritonclient.http as triton

    data, local = reference
    texts = [*SENTENCES, "un film émouvant — très réussi ✓"]  # non-ASCII travels as UTF-8
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        meta = client.get_model_metadata("student")
        assert meta["inputs"][0]["datatype"] == "BYTES"
        tensor = triton.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=object), binary_data=binary_in)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("logits", "probabilities")]
        for name in ("student", "teacher"):
            result = client.infer(name, [tensor], outputs=outputs)
            np.testing.assert_allclose(result.as_numpy("logits"), text_logits(data, local[name], texts), atol=1e-4)
            np.testing.assert_allclose(result.as_numpy("probabilities").sum(1), 1, atol=1e-5)
    finally:
        client.close()


def test_binary_bytes_by_hand_and_binary_output(http, reference):
    """The binary extension spelt out: JSON header, then each string as <uint32 LE length><bytes>."""
    data, local = reference
    r = http.post(INFER, **binary_request([t.encode() for t in SENTENCES], binary_data_output=True))
    assert r.status_code == 200, r.text
    length = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:length])
    assert [o["datatype"] for o in meta["outputs"]] == ["FP32", "FP32"]
    size = meta["outputs"][0]["parameters"]["binary_data_size"]
    logits = np.frombuffer(r.content[length : length + size], dtype="<f4").reshape(3, 2)
    np.testing.assert_allclose(logits, text_logits(data, local["student"], SENTENCES), atol=1e-4)


def test_requests_of_different_lengths_are_batched_and_answered_alone(server, reference):
    """Concurrent requests with sentences of different lengths share forward passes (padded to the
    longest); each answer equals the sentence's logits computed alone."""
    data, local = reference
    texts = [t for t, _ in polar_sentences(12, 5)] + SENTENCES

    def forward_passes(client: httpx.Client) -> float:
        line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith('distil_batch_size_count{model="student",version="1"}'))
        return float(line.split()[-1])

    with httpx.Client(base_url=server.url, timeout=20) as client, ThreadPoolExecutor(8) as pool:
        before = forward_passes(client)
        responses = list(pool.map(lambda t: client.post(INFER, json=oip_text([t])), texts))
        passes = forward_passes(client) - before
    for text, r in zip(texts, responses):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], text_logits(data, local["student"], [text])[0], atol=1e-4)
    assert passes < len(texts)  # some forward passes held several requests of different lengths


def test_predict_takes_json_form_and_plain_text(http, reference):
    data, local = reference
    probs = {}
    for name in ("student", "teacher"):
        logits = text_logits(data, local[name], ["the music was superb"])[0]
        probs[name] = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    answers = [
        http.post("/predict", json={"text": "the music was superb"}),
        http.post("/predict", data={"text": "the music was superb"}),
        http.post("/predict", files={"text": (None, "the music was superb")}),
        http.post("/predict", content=b"the music was superb", headers={"content-type": "text/plain; charset=utf-8"}),
    ]
    for r in answers:
        assert r.status_code == 200, r.text
        body = r.json()
        top = body["predictions"][0]
        assert top[0]["class"] == "pos" == ["neg", "pos"][int(np.argmax(probs["student"]))]
        assert top[0]["probability"] == pytest.approx(float(probs["student"].max()), abs=1e-4)
        assert body["latency_ms"] > 0 and body["tokenize_ms"] > 0
    teacher = http.post(
        "/predict", json={"text": ["the music was superb", "the cast was awful"]}, params={"model": "teacher", "k": 1}
    ).json()
    assert teacher["role"] == "teacher" and [p[0]["class"] for p in teacher["predictions"]] == ["pos", "neg"]
    assert teacher["predictions"][0][0]["probability"] == pytest.approx(float(probs["teacher"].max()), abs=1e-4)


def cut(request: dict, n: int) -> dict:
    """``request`` with the last ``n`` bytes of its body missing."""
    return {**request, "content": request["content"][:-n]}


def over_limit() -> str:
    return "the film was wonderful " * (MAX_TEXT // 20)


INVALID_UTF8 = [b"the film was \xff\xfe wonderful"]

BAD = {
    "empty string (OIP)": ("POST", INFER, {"json": oip_text([""])}, 400, "text 0 is empty"),
    "blank string (OIP)": ("POST", INFER, {"json": oip_text(["fine", "   "])}, 400, "text 1 is empty"),
    "empty string (predict)": ("POST", "/predict", {"json": {"text": ""}}, 400, "empty"),
    "empty form field": ("POST", "/predict", {"data": {"text": ""}}, 400, "empty"),
    "over the text limit (OIP JSON)": ("POST", INFER, {"json": oip_text([over_limit()])}, 413, f"at most {MAX_TEXT}"),
    "over the text limit (OIP binary)": ("POST", INFER, binary_request([over_limit().encode()]), 413, f"at most {MAX_TEXT}"),
    "over the text limit (predict)": ("POST", "/predict", {"json": {"text": over_limit()}}, 413, f"at most {MAX_TEXT}"),
    "over the limit in non-ASCII bytes": ("POST", "/predict", {"json": {"text": "é" * (MAX_TEXT // 2 + 1)}}, 413, "bytes of UTF-8"),
    "invalid UTF-8 in a binary BYTES tensor": ("POST", INFER, binary_request(INVALID_UTF8), 400, "not valid UTF-8"),
    "lone surrogate in JSON": (
        "POST",
        INFER,
        {"content": b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":["a\\ud800b"]}]}'},
        400,
        "invalid inference request",
    ),
    "lone surrogate (predict)": (
        "POST",
        "/predict",
        {"content": b'{"text": "a\\ud800b"}', "headers": {"content-type": "application/json"}},
        400,
        "lone surrogate",
    ),
    "float tensor to a text model": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "text", "shape": [1, 4], "datatype": "FP32", "data": [0.0] * 4}]}},
        400,
        "the model takes BYTES",
    ),
    "float tensor named input": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "input", "shape": [1, 24], "datatype": "FP32", "data": [0.0] * 24}]}},
        400,
        "raw UTF-8 strings",
    ),
    "numbers as BYTES data": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [1, 2]}]}},
        400,
        "must be strings",
    ),
    "BYTES shape not [N]": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "text", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}},
        400,
        "expected [N]",
    ),
    "fewer strings than the shape": (
        "POST",
        INFER,
        {"json": {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}},
        400,
        "needs 2",
    ),
    "binary payload shorter than declared": ("POST", INFER, cut(binary_request([b"hello"]), 2), 400, "shorter than the declared"),
    "binary length prefix past the data": (
        "POST",
        INFER,
        binary_request([b"hi"], blob=(99).to_bytes(4, "little") + b"hi"),
        400,
        "declares 99 bytes",
    ),
    "more binary elements than the shape": ("POST", INFER, binary_request([b"one", b"two"], shape=[1]), 400, "holds 1 elements"),
    "predict without text": ("POST", "/predict", {"json": {"data": [1, 2]}}, 400, '"text"'),
    "predict form without text": ("POST", "/predict", {"data": {"file": "x"}}, 400, "no field 'text'"),
    "predict image to a text model": (
        "POST",
        "/predict",
        {"content": b"\x89PNG....", "headers": {"content-type": "image/png"}},
        415,
        "text model",
    ),
    "predict invalid UTF-8 body": (
        "POST",
        "/predict",
        {"content": INVALID_UTF8[0], "headers": {"content-type": "text/plain"}},
        400,
        "not valid UTF-8",
    ),
    "predict text list with a number": ("POST", "/predict", {"json": {"text": ["fine", 3]}}, 400, "list of strings"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_text_input_gets_4xx_json_and_server_stays_up(http, case):
    method, path, kwargs, status, words = BAD[case]
    response = http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]
    assert http.post(INFER, json=oip_text(["the film was wonderful"])).status_code == 200  # still answering


def test_bytes_tensor_to_an_image_model_is_a_json_400():
    with ThreadedServer(create_app(load_models(tiny_run(), "torch"))) as server:
        for request in (
            oip_text(["a sentence"], name="input"),
            oip_text(["a sentence"]),
        ):
            r = httpx.post(server.url + "/v2/models/student/infer", json=request)
            assert r.status_code == 400 and "the model takes FP32" in r.json()["error"], r.text
        blob = bytes_tensor([b"a sentence"])
        header = json.dumps(
            {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}]}
        ).encode()
        r = httpx.post(
            server.url + "/v2/models/student/infer", content=header + blob, headers={"Inference-Header-Content-Length": str(len(header))}
        )
        assert r.status_code == 400 and "FP32" in r.json()["error"]
        assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}


def test_feedback_is_a_text_transfer_set(tmp_path, models, run, reference):
    data, _ = reference
    folder = tmp_path / "fb"
    writer = feedback_writer(models[0], folder, max_samples=5)
    assert isinstance(writer, TextFeedbackWriter)
    writer.shard_size = 2
    served = ["the story was moving", "the plot was tedious", "le film était très beau ✓", "the cast was clumsy"]
    with ThreadedServer(create_app(models, ServeSettings(), writer)) as server:
        assert httpx.post(server.url + INFER, json=oip_text(served[:2])).status_code == 200
        assert httpx.post(server.url + "/predict", json={"text": served[2]}).status_code == 200
        assert (
            httpx.post(server.url + "/predict", json={"text": served[0]}, params={"model": "teacher"}).status_code == 200
        )  # teacher: not captured
        assert httpx.post(server.url + "/predict", json={"text": served[3:] * 3}).status_code == 200  # 3 more: the cap keeps 2
    lines = [json.loads(line) for line in (folder / "served.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in lines] == served + [served[3]] and writer.written == 5
    assert lines[0]["label"] == "pos" and lines[1]["label"] == "neg"
    meta = json.loads((folder / "transfer.json").read_text())
    assert meta["format"] == "text_jsonl" and meta["class_names"] == ["neg", "pos"]

    # as a transfer set of the run's data (tokenized with its tokenizer), and as pseudo-labelled data
    transfer = load_unlabeled("text_jsonl", data, path=folder / "served.jsonl", label_column=None)
    assert len(transfer) == 5 and transfer.x.dtype == data.train.x.dtype
    first = data.text.encode([served[0]])[0]
    np.testing.assert_array_equal(transfer.x[0, : len(first)].numpy(), first.numpy())
    labelled = load_dataset("text_jsonl", path=folder / "served.jsonl", classes=["neg", "pos"], val_size=0.2)
    assert labelled.class_names == ("neg", "pos") and len(labelled.train) + len(labelled.val) + len(labelled.test) == 5

    # the cap holds across restarts, and a line cut short by a crash is dropped
    with open(folder / "served.jsonl", "ab") as f:
        f.write(b'{"text": "cut sh')
    again = TextFeedbackWriter(folder, ("neg", "pos"), max_samples=5)
    assert again.written == 5 and again.add([b'{"text": "more"}\n']) == 0
    assert (folder / "served.jsonl").read_bytes().endswith(b"}\n")


def test_a_changed_tokenizer_is_refused(tmp_path, run):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["data"]["text"]["tokenizer_sha256"] = "0" * 64
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ModelError, match="changed since the data were tokenized .*expected 000000000000"):
        load_models(copy, "torch")


def test_batcher_pads_token_rows_and_gives_each_request_its_own_length():
    from distil.serve.batching import join, own_rows

    short, long = np.array([[101, 7, 102]]), np.array([[101, 7, 8, 9, 102], [101, 5, 102, 0, 0]])
    joined = join([short, long])
    assert joined.tolist() == [[101, 7, 102, 0, 0], [101, 7, 8, 9, 102], [101, 5, 102, 0, 0]]
    token_logits = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2)  # a tagger's (N, L, K)
    assert own_rows(token_logits, 0, short).shape == (1, 3, 2) and own_rows(token_logits, 1, long).shape == (2, 5, 2)
    assert own_rows(token_logits[:, 0], 1, long).shape == (2, 2)  # a classifier's rows as they are


# --- taggers: a tag per word ------------------------------------------------------------------------

TAGGED = ["the old dog saw a cat quickly.", "every happy student visited this city", "a cat liked the river."]


@pytest.fixture(scope="module")
def tagger():
    run = tiny_tagger_run()
    data, local = text_reference(run)
    with ThreadedServer(
        create_app(load_models(run, "onnxruntime"), ServeSettings(batch=BatchSettings(max_batch=8, max_delay_ms=20)))
    ) as server:
        yield server, data, local


def test_tagger_metadata_and_oip_tags_match_the_local_models(tagger):
    server, data, local = tagger
    meta = httpx.get(server.url + "/v2/models/student").json()
    tags = len(data.class_names)
    assert meta["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1, tags]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1, tags]},
        {"name": "tags", "datatype": "BYTES", "shape": [-1, -1]},
    ]
    assert meta["parameters"]["text"]["task"] == "tag"
    for name in ("student", "teacher"):
        body = httpx.post(f"{server.url}/v2/models/{name}/infer", json=oip_text(TAGGED)).json()
        out = {o["name"]: o for o in body["outputs"]}
        width = out["tags"]["shape"][1]
        rows = [out["tags"]["data"][i * width : (i + 1) * width] for i in range(len(TAGGED))]
        for text, row in zip(TAGGED, rows):
            words, expected = local_word_tags(data, local[name], text)
            assert row[: len(words)] == expected and set(row[len(words) :]) <= {""}, (name, text)
        assert out["logits"]["shape"][:2] == [3, max(len(data.text.encode_words(t).ids[0]) for t in TAGGED)]


def test_tagger_through_tritonclient_binary(tagger):
    import tritonclient.http as triton

    server, data, local = tagger
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        tensor = triton.InferInput("text", [len(TAGGED)], "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in TAGGED], dtype=object), binary_data=True)
        result = client.infer("student", [tensor], outputs=[triton.InferRequestedOutput(n, binary_data=True) for n in ("tags", "logits")])
        tags = result.as_numpy("tags")
        for text, row in zip(TAGGED, tags):
            words, expected = local_word_tags(data, local["student"], text)
            assert [t.decode() for t in row[: len(words)]] == expected
        logits = result.as_numpy("logits")
        assert logits.ndim == 3 and logits.shape[0] == 3 and logits.shape[2] == len(data.class_names)
    finally:
        client.close()


def test_tagger_predict_gives_a_tag_per_word_and_batches_of_different_lengths(tagger):
    server, data, local = tagger
    with httpx.Client(base_url=server.url, timeout=20) as client, ThreadPoolExecutor(6) as pool:
        texts = TAGGED + ["the dog saw a cat", "a big old happy small quiet dog often followed every teacher quietly."]
        answers = list(pool.map(lambda t: client.post("/predict", json={"text": t}), texts))
        teacher = client.post("/predict", data={"text": TAGGED[0]}, params={"model": "teacher"}).json()
    for text, r in zip(texts, answers):
        assert r.status_code == 200, r.text
        words, expected = local_word_tags(data, local["student"], text)
        shown = r.json()["tags"][0]
        assert [w["word"] for w in shown] == words and [w["tag"] for w in shown] == expected
        assert all(0 < w["probability"] <= 1 for w in shown) and "predictions" not in r.json()
    assert [w["tag"] for w in teacher["tags"][0]] == local_word_tags(data, local["teacher"], TAGGED[0])[1]
    assert teacher["latency_ms"] > 0 and teacher["tokenize_ms"] > 0


def test_tagger_feedback_stores_words_and_tags(tmp_path, tagger):
    _, data, local = tagger
    models = load_models(tiny_tagger_run(), "torch")
    writer = feedback_writer(models[0], tmp_path / "fb")
    with ThreadedServer(create_app(models, ServeSettings(), writer)) as s:
        assert httpx.post(s.url + "/predict", json={"text": TAGGED[:2]}).status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "fb" / "served.jsonl").read_text().splitlines()]
    assert [r["text"] for r in lines] == TAGGED[:2]
    for record in lines:
        assert (record["words"], record["tags"]) == local_word_tags(data, local["student"], record["text"])
    transfer = load_unlabeled("text_jsonl", data, path=tmp_path / "fb" / "served.jsonl", label_column=None)
    assert len(transfer) == 2


def test_exported_text_model_as_a_bare_onnx_file_and_from_compressed(tmp_path, run, models, reference):
    """The exporter takes token ids (dynamic batch and length), so a text model is served from ONNX:
    as a bare MODEL.onnx whose sidecar names the tokenizer, and from the run's compressed/."""
    from distil.serve.repository import export_onnx

    data, local = reference
    exported = export_onnx(local["student"], models[0].input)
    assert exported is not None, "the start-up export of a text student failed (see the warning logged by distil.serve)"
    assert exported.graph_input.takes_any_length
    bare = tmp_path / "model.onnx"
    shutil.copy(exported.path, bare)
    (tmp_path / "model.json").write_text(json.dumps({"data": json.loads((run / "summary.json").read_text())["data"]}))
    (served,) = load_models(bare, name="bare")
    assert served.is_text and served.backend.name == "onnxruntime" and served.class_names == ("neg", "pos")
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "compressed").mkdir()
    shutil.copy(exported.path, copy / "compressed" / "student.onnx")
    summary = json.loads((copy / "summary.json").read_text())
    kd = next(m for m in summary["models"] if m["name"] == "student_kd")  # the row `distil compress` adds for its export
    summary["models"].append({**kd, "name": "student_kd.onnx", "method": "onnx", "source": "student_kd", "runtime": "onnxruntime",
                              "weights": "compressed/student.onnx", "latency_ms_b1": kd["latency_ms_b1"] / 2})  # fmt: skip
    (copy / "summary.json").write_text(json.dumps(summary))
    student = load_models(copy)[0]
    assert student.info["weights"] == str(copy / "compressed" / "student.onnx") and student.info["row"] == "student_kd.onnx"
    with ThreadedServer(create_app([served, student])) as server:
        for name in ("bare", "student"):
            r = httpx.post(f"{server.url}/v2/models/{name}/infer", json=oip_text(SENTENCES))
            logits = np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(3, 2)
            np.testing.assert_allclose(logits, text_logits(data, local["student"], SENTENCES), atol=1e-4)
