"""The deploy loop on a text-classification run, end to end: serve the tiny text run with feedback,
correct a few answers over HTTP (ids stable across restarts, bad corrections refused), `distil loop`
(the texts tokenized with the run's tokenizer, teacher labels + corrections, old vs new on the same
held-out data), and the served text model hot-swapping to the promoted version."""

from __future__ import annotations

import copy
import json
import shutil
import time

import httpx
import numpy as np
import pytest
import torch
from serve_helpers import ThreadedServer, text_reference, tiny_tagger_run, tiny_text_run
from text_helpers import polar_sentences

from distil.data.sources.transfer import UNCORRECTED, load_text_feedback
from distil.data.unlabeled import load_unlabeled
from distil.errors import DataError
from distil.loop import run_loop
from distil.loop.feedback_loop import held_out
from distil.serve import ServeSettings, TextFeedbackWriter, create_app, feedback_writer, load_models
from distil.session.versions import promoted_versions
from distil.weights import load_weights

#: Served sentences the run never saw (another seed), with their true classes.
SERVED = polar_sentences(60, seed=7)


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A copy of the tiny text run; its tokens cache is the one the run was made with."""
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tiny_text_run().parent / "data-cache"))
    copy = tmp_path / "run"
    shutil.copytree(tiny_text_run(), copy)
    return copy


def serve_and_correct(run, folder, texts: list[str], labels: list[str], corrected: int) -> list[str]:
    """Serve ``run`` with feedback into ``folder``, send ``texts`` to /predict, correct the first ``corrected``."""
    models = load_models(run, "onnxruntime")
    with ThreadedServer(create_app(models, ServeSettings(), feedback_writer(models[0], folder))) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        answer = client.post("/predict", json={"text": texts}).json()
        ids = answer["feedback_ids"]
        for i in range(corrected):
            r = client.post("/feedback", json={"id": ids[i], "label": labels[i]})
            assert r.status_code == 200 and r.json()["stored"] == {"id": ids[i], "label": labels[i], "index": ["neg", "pos"].index(labels[i])}
    return ids


def test_text_feedback_has_ids_and_corrections_across_restarts(run, tmp_path):
    folder = tmp_path / "fb"
    texts, labels = [t for t, _ in SERVED[:4]], [y for _, y in SERVED[:4]]
    models = load_models(run, "torch")
    with ThreadedServer(create_app(models, ServeSettings(), feedback_writer(models[0], folder))) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        first = client.post("/predict", json={"text": texts[:3]}).json()["feedback_ids"]
        oip = client.post("/v2/models/student/infer", json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": texts[3:]}]})
        (oip_id,) = oip.json()["parameters"]["feedback_ids"]
        ids = [*first, oip_id]
        assert len(set(ids)) == 4
        assert client.post("/predict", json={"text": texts[0]}, params={"model": "teacher"}).json().get("feedback_ids") is None  # not captured
        assert client.post("/feedback", json={"id": ids[0], "label": "neg"}).status_code == 200
        assert client.post("/feedback", json={"id": ids[0], "label": labels[0]}).status_code == 200  # the last correction wins
        unknown_class = client.post("/feedback", json={"id": ids[1], "label": "neutral"})
        assert unknown_class.status_code == 422 and "unknown class 'neutral'; the classes are: neg, pos" in unknown_class.json()["error"]
        unknown_id = client.post("/feedback", json={"id": "nope-1", "label": "pos"})
        assert unknown_id.status_code == 404 and "feedback_id" in unknown_id.json()["error"]
        assert client.post("/feedback", json={"id": ids[1]}).status_code == 422
        assert client.post("/predict", json={"text": "the cast was superb"}).status_code == 200  # still answering
    # a restarted server: new ids never meet the old ones, and the old ones can still be corrected
    writer = feedback_writer(models[0], folder)
    with ThreadedServer(create_app(models, ServeSettings(), writer)) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        (later,) = client.post("/predict", json={"text": texts[1]}).json()["feedback_ids"]
        assert later not in ids
        assert client.post("/feedback", json={"id": ids[2], "label": labels[2]}).status_code == 200
        assert client.post("/feedback", json={"id": later, "label": labels[1]}).status_code == 200
    fb = load_text_feedback(folder)
    assert list(fb.texts) == [*texts, "the cast was superb", texts[1]] and fb.ids[:4] == tuple(ids) and fb.ids[5] == later
    index = {"neg": 0, "pos": 1}
    assert fb.corrected.tolist() == [index[labels[0]], UNCORRECTED, index[labels[2]], UNCORRECTED, UNCORRECTED, index[labels[1]]]
    # served.jsonl is still a text transfer set (the id is one more key of each line)
    data, _ = text_reference(run)
    assert len(load_unlabeled("text_jsonl", data, path=folder / "served.jsonl", label_column=None)) == 6
    # lines written before ids existed get ids from their line numbers, and can be corrected
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "served.jsonl").write_text('{"text": "the plot was dull", "label": "neg"}\n')
    old = TextFeedbackWriter(legacy, ("neg", "pos"))
    assert old.correct("line-0", "neg")["index"] == 0
    assert load_text_feedback(legacy).ids == ("line-0",) and load_text_feedback(legacy).corrected.tolist() == [0]


def test_loop_on_a_text_run_promotes_a_version_that_serve_answers_from(run, tmp_path):
    folder = tmp_path / "fb"
    texts, labels = [t for t, _ in SERVED], [y for _, y in SERVED]
    ids = serve_and_correct(run, folder, texts, labels, corrected=12)
    held = [held_out(t, 0.2) for t in texts]  # a text run holds out by the text itself
    assert 0 < sum(held) < len(ids)

    cache = tmp_path / "teacher-cache"
    result = run_loop(run, folder, epochs=2, cache_dir=str(cache), log=lambda _: None)
    assert result.feedback == {"train": len(ids) - sum(held), "held_out": sum(held), "corrected": 12}
    assert set(result.old) == set(result.new) == {"test", "feedback"}
    # the scores are the old and new students' accuracies on the run's test split and the held-out
    # feedback (labelled by the correction, else the teacher's top class), recomputed here by hand
    data, local = text_reference(run)
    x_out = data.text.encode([t for t, h in zip(texts, held) if h])
    corrected = {texts[i]: labels[i] for i in range(12)}  # a correction holds for every copy of its text
    with torch.inference_mode():
        teacher_top = local["teacher"](x_out).argmax(1)
        y_out = torch.tensor([["neg", "pos"].index(corrected[t]) if t in corrected else int(k) for t, k in zip([t for t, h in zip(texts, held) if h], teacher_top)])
        old_feedback = float((local["student"](x_out).argmax(1) == y_out).float().mean())
        old_test = float((local["student"](data.test.x).argmax(1) == data.test.y).float().mean())
    assert result.old == pytest.approx({"test": old_test, "feedback": old_feedback}, abs=1e-6)
    assert list(cache.glob("*.safetensors"))  # the teacher's soft targets went through the teacher cache
    assert result.promoted, result.as_dict()  # two gentle epochs on a task the student has learnt do not hurt
    (version,) = promoted_versions(run)
    assert version.number == result.version == 2 and version.onnx.is_file() and version.weights.is_file()
    row = version.row
    assert row["name"] == "student.v2" and row["accuracy"] == pytest.approx(result.new["test"], abs=1e-9)
    assert row["tokenize_ms_b1"] > 0 and row["latency_ms_b1_text"] > row["latency_ms_b1"] and row["feedback_accuracy"] == result.new["feedback"]
    history = [json.loads(line) for line in (run / "versions" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["promoted"] and history[-1]["version"] == 2

    # the served text model watches RUN/versions: version 2 answers (same logits as its weights in PyTorch), version 1 still can
    new_student = load_weights(copy.deepcopy(local["student"]), version.weights).eval()
    probe = ["the story was wonderful and the cast too", "the ending was lifeless"]
    with ThreadedServer(create_app(load_models(run, "onnxruntime"), ServeSettings(poll_s=0.05), watch=run)) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        assert client.get("/v2/models/student").json()["versions"] == ["1", "2"]
        infer = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": probe}]}
        newest = client.post("/v2/models/student/infer", json=infer).json()
        assert newest["model_version"] == "2"
        with torch.inference_mode():
            expected = new_student(data.text.encode(probe)).numpy()
        np.testing.assert_allclose(np.asarray(newest["outputs"][0]["data"]).reshape(2, 2), expected, atol=1e-4)
        first = client.post("/v2/models/student/versions/1/infer", json=infer).json()
        assert first["model_version"] == "1"
        meta = client.get("/v2/models/student/versions/2").json()
        assert meta["parameters"]["row"] == "student.v2" and meta["parameters"]["text"]["tokenizer"] == "minilm"
        predicted = client.post("/predict", json={"text": probe[0]}).json()
        assert predicted["version"] == "2" and predicted["predictions"][0][0]["class"] == ["neg", "pos"][int(expected[0].argmax())]
        # a second loop's promotion is picked up while serving
        again = run_loop(run, folder, epochs=1, cache_dir=str(cache), log=lambda _: None)
        assert again.promoted and again.version == 3 and again.old == pytest.approx(result.new), again.as_dict()  # it starts from version 2
        deadline = time.monotonic() + 10
        while client.get("/v2/models/student").json()["versions"] != ["1", "2", "3"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.post("/v2/models/student/infer", json=infer).json()["model_version"] == "3"


def test_a_too_hot_text_retrain_is_refused(run, tmp_path):
    folder = tmp_path / "fb"
    serve_and_correct(run, folder, [t for t, _ in SERVED[:30]], [y for _, y in SERVED[:30]], corrected=0)
    result = run_loop(run, folder, epochs=1, lr=30.0, cache_dir=str(tmp_path / "cache"), log=lambda _: None)  # far too hot: worse
    assert not result.promoted and result.version is None and "worse by" in result.reason, result.as_dict()
    assert result.new["test"] < result.old["test"] - 0.005
    assert promoted_versions(run) == [] and len((run / "versions" / "history.jsonl").read_text().splitlines()) == 1


def test_loop_refuses_feedback_of_another_kind_and_tagging_runs(run, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="served.jsonl"):
        run_loop(run, tmp_path / "nothing", log=lambda _: None)
    wrong = tmp_path / "wrong"
    writer = TextFeedbackWriter(wrong, ("bad", "good"))
    writer.add([b'{"id": "a-0", "text": "fine"}\n'])
    writer.flush()
    with pytest.raises(DataError, match=r"classes \['bad', 'good'\] are not the run's \['neg', 'pos'\]"):
        run_loop(run, wrong, log=lambda _: None)
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tiny_tagger_run().parent / "data-cache"))
    with pytest.raises(DataError, match="'tag' text run .*text-classification runs"):
        run_loop(tiny_tagger_run(), tmp_path / "fb", log=lambda _: None)
    assert not (run / "versions").exists() and not (tiny_tagger_run() / "versions").exists()  # nothing written


def test_text_feedback_edge_cases(run, tmp_path):
    """A correction of a text still in memory writes the text first; a line cut inside a UTF-8 character
    is one bad line, not a crash; copies of one text are held out together and share its correction;
    a run whose tokenizer changed since training is refused by name."""
    from distil.loop.inputs import input_kind

    folder = tmp_path / "fb"
    writer = TextFeedbackWriter(folder, ("neg", "pos"), shard_size=1000)
    models = load_models(run, "torch")
    batch = models[0].inputs.from_oip([t.encode() for t in ("très bien", "the plot was dull", "très bien")], [3], ServeSettings().limits)
    ids = writer.capture(models[0], batch, np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], np.float32))
    assert writer.pending == 3 and not (folder / "served.jsonl").exists()
    writer.correct(ids[0], "neg")  # the texts waiting in memory reach the disk before the correction
    assert writer.pending == 0 and load_text_feedback(folder).ids == tuple(ids)
    with open(folder / "served.jsonl", "ab") as f:  # a torn last line, cut inside "é", and then a whole one
        f.write('{"id": "x-0", "text": "caf'.encode() + "é".encode()[:1] + b"\n" + b'{"id": "x-1", "text": "fine"}\n')
    fb = load_text_feedback(folder)
    assert fb.texts == ("très bien", "the plot was dull", "très bien", "fine")
    data, _ = text_reference(run)
    loop_fb = input_kind(run, data).read(run, folder, data)
    assert loop_fb.corrected.tolist() == [0, UNCORRECTED, 0, UNCORRECTED]  # both copies carry the correction
    assert loop_fb.keys[0] == loop_fb.keys[2] and held_out(loop_fb.keys[0], 0.2) == held_out(loop_fb.keys[2], 0.2)
    summary = json.loads((run / "summary.json").read_text())
    summary["data"]["text"]["tokenizer_sha256"] = "0" * 64
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataError, match="not the one the run was trained with"):
        run_loop(run, folder, log=lambda _: None)
    assert not (run / "versions").exists()


def test_a_text_feedback_folder_given_to_an_image_run_is_named(tmp_path):
    from distil.data.sources.transfer import load_feedback

    writer = TextFeedbackWriter(tmp_path / "fb", ("neg", "pos"))
    writer.add([b'{"id": "a-0", "text": "fine"}\n'])
    writer.flush()
    with pytest.raises(DataError, match=r"a text model's feedback \(served.jsonl\); this run takes tensor inputs"):
        load_feedback(tmp_path / "fb")
