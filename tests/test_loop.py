"""The deploy loop end to end on a tiny digits run: serve with feedback, correct predictions over HTTP,
`distil loop` (teacher labels + corrections, old vs new on the same held-out data, promotion), versions."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from serve_helpers import ThreadedServer, tiny_run
from sklearn.datasets import load_digits

from distil.data.sources.transfer import UNCORRECTED, load_feedback
from distil.loop import run_loop
from distil.loop.feedback_loop import held_out
from distil.serve import create_app, feedback_writer, load_models
from distil.session.versions import promoted_versions


def digits(n: int, start: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digits images at raw scale (what a client sends to /predict) and their true labels."""
    d = load_digits()
    return (d.images[start : start + n] / 16).astype(np.float32), d.target[start : start + n]


@contextmanager
def serving(tmp_path):
    """A copy of the tiny run served with feedback on; yields (run, feedback folder, client). Leaving it
    stops the server, which writes the samples still waiting in memory."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    models = load_models(run, "torch")
    folder = tmp_path / "feedback"
    writer = feedback_writer(models[0], folder)
    with ThreadedServer(create_app(models, feedback=writer)) as server, httpx.Client(base_url=server.url, timeout=20) as client:
        yield run, folder, client


def serve_and_correct(client, n: int = 120, corrected: int = 40) -> tuple[list[str], np.ndarray]:
    x, y = digits(n)
    answer = client.post("/predict", json={"data": x.tolist()}).json()
    ids = answer["feedback_ids"]
    assert len(ids) == n and len(set(ids)) == n and answer["compute_ms"] > 0
    classes = [str(k) for k in range(10)]
    for i in range(corrected):
        r = client.post("/feedback", json={"id": ids[i], "label": classes[y[i]]})
        assert r.status_code == 200 and r.json()["stored"]["index"] == y[i]
    return ids, y


def test_corrections_are_stored_beside_the_inputs_and_bad_ones_refused(tmp_path):
    with serving(tmp_path) as (_run, folder, client):
        ids, y = serve_and_correct(client, n=6, corrected=2)
        client.post("/feedback", json={"id": ids[2], "label": "7"})
        client.post("/feedback", json={"id": ids[2], "label": str(y[2])})  # the last correction wins
        unknown_class = client.post("/feedback", json={"id": ids[0], "label": "cat"})
        assert unknown_class.status_code == 422 and "unknown class 'cat'" in unknown_class.json()["error"]
        unknown_id = client.post("/feedback", json={"id": "nope-1", "label": "3"})
        assert unknown_id.status_code == 404 and "feedback_id" in unknown_id.json()["error"]
        assert client.post("/feedback", content=b"{", headers={"content-type": "application/json"}).status_code == 400
        assert client.post("/feedback", json={"label": "3"}).status_code == 422
        assert client.get("/v2/health/live").status_code == 200
        assert "distil_feedback_samples_total 6.0" in client.get("/metrics").text
        x = digits(1, start=5)[0][None]  # OIP infer takes normalized inputs; it captures them and answers their ids too
        oip = client.post("/v2/models/student/infer", json={"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]})
        (oip_id,) = oip.json()["parameters"]["feedback_ids"]
        assert client.post("/feedback", json={"id": oip_id, "label": "5"}).status_code == 200
    fb = load_feedback(folder)
    assert list(fb.ids) == [*ids, oip_id] and fb.corrected.tolist() == [y[0], y[1], y[2], UNCORRECTED, UNCORRECTED, UNCORRECTED, 5]


def test_loop_teacher_labels_feedback_compares_and_promotes_a_version(tmp_path):
    with serving(tmp_path) as (run, folder, client):
        ids, y = serve_and_correct(client)
    fb = load_feedback(folder)
    assert list(fb.ids) == ids and np.array_equal(fb.corrected[:40], y[:40]) and (fb.corrected[40:] == UNCORRECTED).all()
    np.testing.assert_allclose(fb.x[:, 0], digits(120)[0], atol=1e-6)  # inputs stored at raw scale

    cache = tmp_path / "teacher-cache"
    result = run_loop(run, folder, epochs=2, cache_dir=str(cache), log=lambda _: None)
    held = sum(held_out(i, 0.2) for i in ids)
    assert result.feedback == {"train": 120 - held, "held_out": held, "corrected": 40} and 0 < held < 120
    assert set(result.old) == set(result.new) == {"test", "feedback"}
    not_worse = all(result.new[k] >= result.old[k] - 0.005 - 1e-12 for k in result.old)
    assert result.promoted == not_worse
    assert list(cache.glob("*.safetensors"))  # the teacher's targets were cached on disk, like any transfer set
    history = [json.loads(line) for line in (run / "versions" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["promoted"] == result.promoted and history[-1]["new"] == result.new
    assert result.promoted, result.as_dict()  # on this data two more epochs with corrections do not hurt
    (version,) = promoted_versions(run)
    assert version.number == result.version == 2 and version.onnx.is_file()
    assert version.row["accuracy"] == pytest.approx(result.new["test"], abs=1e-9) and version.row["name"] == "student.v2"
    assert version.summary["loop"]["old"] == result.old


def test_a_broken_retrain_is_not_promoted(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run(), run)
    x, _ = digits(60)
    writer = feedback_writer(load_models(run, "torch")[0], tmp_path / "fb")
    mean, std = writer._mean.ravel()[0], writer._std.ravel()[0]
    writer.add(((x[:, None] - mean) / std).astype(np.float32), np.zeros(60, np.int64))
    writer.flush()
    result = run_loop(run, tmp_path / "fb", epochs=1, lr=3.0, cache_dir=str(tmp_path / "cache"), log=lambda _: None)  # far too hot: worse
    assert not result.promoted and result.version is None and "worse by" in result.reason, result.as_dict()
    assert result.new["test"] < result.old["test"] - 0.005
    result = run_loop(run, tmp_path / "fb", epochs=1, lr=1e4, cache_dir=str(tmp_path / "cache"), log=lambda _: None)  # diverges
    assert not result.promoted and "diverged" in result.reason
    assert promoted_versions(run) == [] and len((run / "versions" / "history.jsonl").read_text().splitlines()) == 2


def test_loop_command_refuses_bad_input_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from distil.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["loop", str(tmp_path), "--feedback", str(tmp_path / "fb")])
    assert result.exit_code == 2 and "no summary.json" in result.output
    result = runner.invoke(app, ["loop", str(tiny_run()), "--feedback", str(tmp_path / "fb")])
    assert result.exit_code == 2 and "fb" in result.output
    assert not (tiny_run() / "versions").exists()  # nothing written
