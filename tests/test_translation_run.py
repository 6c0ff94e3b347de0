"""`distil run` on a translation config: tiny models on a few hundred Bible verse pairs, end to end; bad input."""

import json

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from serve_helpers import ThreadedServer
from strategy_helpers import run_cli, run_cli_with

from distil.config.translation import TranslationConfig
from distil.serve.translation import create_translation_app, load_translators
from distil.weights import load_weights

TINY = {
    "kind": "translation",
    "name": "tiny",
    "data": {"limit": 300, "val_size": 30, "test_size": 30, "vocab_size": 120, "max_length": 24, "max_words": 10},
    "teacher": {"bidirectional": True, "embed": 24, "hidden": 32, "epochs": 2, "batch_size": 32, "lr": 0.01},
    "student": {"embed": 16, "hidden": 16, "epochs": 1, "batch_size": 32, "lr": 0.01},
    "evaluate": {"latency_sentences": 2, "examples": 2, "beam": 3},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run shared by the tests of this module (its teacher cache in a temporary folder)."""
    folder = tmp_path_factory.mktemp("translation")
    return folder / "out", run_cli_with(folder, TINY, DISTIL_CACHE=str(folder / "teacher-cache"))


def test_one_command_runs_teacher_and_every_student_and_writes_the_table(tiny_run):
    out, result = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    names = [m["name"] for m in summary["models"]]
    assert names == ["teacher", "student_data", "student_word_kd", "student_seq_kd", "student_seq_word_kd"]
    teacher, student = summary["models"][0], summary["models"][1]
    assert teacher["params"] > student["params"] and teacher["size_bytes"] > student["size_bytes"]
    for m in summary["models"]:
        assert 0 <= m["bleu"] <= 100 and 0 <= m["chrf_beam"] <= 100 and m["latency_ms_greedy"] > 0 and m["tokens_per_s"] > 0
        assert (out / m["weights"]).is_file()
    seq, both = summary["models"][3]["teacher_outputs"], summary["models"][4]["teacher_outputs"]
    assert seq["beam"] == 5 and seq == both  # the teacher's beam translations: computed once, shared
    assert summary["models"][2]["word_kd"] == {"alpha": 0.5, "T": 1.0}
    assert summary["data"]["sizes"] == {"test": 30, "val": 29, "train": 240}  # val drew a sentence twice: scored once
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    teacher_nll = [-e["val_accuracy"] for e in epochs if e["model"] == "teacher"]
    assert len(teacher_nll) == 2 and teacher_nll[1] < teacher_nll[0]  # the teacher learns
    ex = summary["examples"][0]
    assert set(ex["translations"]) >= {"teacher", "teacher (beam 3)", "student_seq_kd"} and ex["reference"]
    assert "BLEU" in result.output and "chrF" in result.output and "teacher" in result.output  # the table (columns wrap at 80)
    page = (out / "report.html").read_text()
    assert "Example translations" in page and ex["source"].split()[0] in page
    assert (out / "source_tokenizer.json").is_file() and (out / "target_tokenizer.json").is_file()
    export = summary["export"]  # the served student as ONNX encoder + decoder step, checked on real test sentences
    assert export["model"] == "student_seq_kd" and export["files"] == ["onnx/student_seq_kd/decoder_step.onnx", "onnx/student_seq_kd/encoder.onnx"]
    assert export["parity"]["same_translation"] == 1.0 and export["parity"]["alone_same_translation"] == 1.0 and export["parity"]["sentences"] == 30
    assert export["parity"]["max_abs_diff"] < 1e-4 and export["latency_ms_greedy_onnx"] > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distill": {"methods": ["seq_kdd"]}}, "did you mean 'seq_kd'"),
        ({"student": {"hiden": 8}}, "did you mean 'hidden'"),
        ({"data": {"source": "pairs_file"}}, "data.path is required"),
        ({"strategy": {"name": "ensemble", "teachers": []}}, "strategy.ensemble.teachers: List should have at least 1 item"),
        ({"strategy": {"name": "ensemble", "teachers": [{}], "weights": [1, 2, 3]}}, "weights has 3 entries but the ensemble has 2 members"),
        ({"strategy": {"name": "ensemble", "teachers": [{"hiden": 8}]}}, "strategy.ensemble.teachers.0.hiden: unknown key (did you mean 'hidden'?)"),
        ({"strategy": {"name": "ensembel"}}, "does not match any of the expected tags: 'none', 'ensemble'"),
    ],
)
def test_config_errors_exit_2_and_write_nothing(tmp_path, change, message):
    result = run_cli(tmp_path, {**TINY, **change})
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_pairs_files_whose_sides_differ_in_count_exit_2(tmp_path):
    (tmp_path / "en.txt").write_text("\n".join(f"line {i}" for i in range(50)) + "\n")
    (tmp_path / "es.txt").write_text("\n".join(f"línea {i}" for i in range(49)) + "\n")
    result = run_cli(tmp_path, {**TINY, "data": {"source": "pairs_file", "path": str(tmp_path / "en.txt"), "target_path": str(tmp_path / "es.txt")}})
    assert result.exit_code == 2 and "has 50 lines but" in result.output and "has 49" in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_serving_a_translation_run(tiny_run, runtime):
    out, _ = tiny_run
    translators = load_translators(out, runtime)
    assert [(t.name, t.role, t.beam) for t in translators] == [("student", "student", 1), ("teacher", "teacher", 5)]
    if runtime == "onnxruntime":  # exported at start-up, kept only with PyTorch's translations of real test sentences
        assert translators[0].info["parity"]["same_translation"] == 1.0 and (out / "onnx" / "student_seq_kd" / "decoder_step.onnx").is_file()
    client = TestClient(create_translation_app(translators, max_text_bytes=200))
    answer = client.post("/predict", json={"text": "And God said, Let there be light."})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [a["model"] for a in body["translations"]] == ["student", "teacher"] and all(a["latency_ms"] > 0 for a in body["translations"])
    assert body["translation"] == body["translations"][0]["translation"] and not body["truncated"]
    oip = client.post("/v2/models/student/infer", json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["And God said", "Jesus wept. 你好"]}]})
    assert oip.status_code == 200, oip.text
    assert oip.json()["outputs"][0]["shape"] == [2] and oip.json()["parameters"]["unknown_tokens"] == [0, 2]  # 你, 好: counted
    long = client.post("/predict", json={"text": "and " * 40}).json()
    assert long["truncated"] and "longer than 24 tokens" in long["notes"][0]
    for request, status, message in [
        (client.post("/predict", json={"text": "   "}), 400, "empty"),
        (client.post("/predict", json={"text": "a" * 201}), 413, "over the server's limit"),
        (client.post("/v2/models/student/infer", json={"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}), 400, "BYTES"),
        (client.post("/v2/models/student/infer", json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}), 400, "shape"),
        (client.post("/v2/models/nobody/infer", json={}), 404, "no model"),
    ]:
        assert request.status_code == status and message in request.json()["error"], request.text
    assert "teacher" in client.get("/").text and client.get("/v2/models/teacher").json()["parameters"]["beam"] == 5


def test_page_shows_student_and_teacher_translations_in_a_browser(tiny_run):
    from serve_helpers import headless_chromium

    driver = headless_chromium()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, _ = tiny_run
    try:
        with ThreadedServer(create_translation_app(load_translators(out, "torch"))) as server:
            expected = httpx.post(server.url + "/predict", json={"text": "And God said"}).json()["translations"]
            driver.get(server.url + "/")
            box = driver.find_element(By.ID, "text")
            box.clear()
            box.send_keys("And God said")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#translations tr")) == 3)
            rows = [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in driver.find_elements(By.CSS_SELECTOR, "#translations tr")[1:]]
            assert [r[0] for r in rows] == ["student (student, beam 1)", "teacher (teacher, beam 5)"]
            assert [r[1] for r in rows] == [a["translation"] for a in expected] and all(r[2].endswith(" ms") for r in rows)
            box.clear()
            box.send_keys("   ")
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "error"))
            assert "empty" in driver.find_element(By.ID, "error").text
    finally:
        driver.quit()


def test_resume_and_serve_options_a_translation_run_lacks_exit_2(tiny_run, tmp_path):
    """--resume would silently start over (no checkpoints yet); --feedback/--teachable would be ignored."""
    from typer.testing import CliRunner

    from distil.cli import app

    runner = CliRunner()
    out, _ = tiny_run
    (tmp_path / "c.yaml").write_text(json.dumps(TINY))
    resumed = runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--resume"])
    assert resumed.exit_code == 2 and "keep no checkpoints yet" in resumed.output
    assert not (tmp_path / "out").exists()
    for flags in (["--feedback", str(tmp_path / "fb")], ["--teachable"]):
        served = runner.invoke(app, ["serve", str(out), *flags])
        assert served.exit_code == 2 and "not available for a translation run" in " ".join(served.output.split()), served.output
    assert not (tmp_path / "fb").exists()


TRANSFORMER_MEMBER = {"arch": "transformer", "hidden": 16, "heads": 2, "layers": 1, "epochs": 2, "batch_size": 32, "lr": 0.01}
ENSEMBLE = {
    **TINY,
    "distill": {"methods": ["word_kd", "seq_kd"]},
    "strategy": {"name": "ensemble", "teachers": [TRANSFORMER_MEMBER]},
    "evaluate": {**TINY["evaluate"], "export": False},
}


def test_an_ensemble_of_a_bilstm_and_a_transformer_teacher_then_the_same_members_loaded(tmp_path):
    cache = str(tmp_path / "teacher-cache")
    run_cli_with(tmp_path / "a", ENSEMBLE, DISTIL_CACHE=cache)
    out = tmp_path / "a" / "out"
    summary = json.loads((out / "summary.json").read_text())
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "teacher_1", "teacher_ensemble", "student_ensemble_word_kd", "student_ensemble_seq_kd"]
    ens = rows["teacher_ensemble"]
    assert ens["role"] == "ensemble" and ens["method"] == "mean of 2 (probs)" and ens["params"] == rows["teacher"]["params"] + rows["teacher_1"]["params"]
    assert ens["ensemble"] == {"members": ["teacher", "teacher_1"], "weights": [0.5, 0.5], "combine": "probs"} and ens["arch"].startswith("ensemble(bilstm")
    assert rows["teacher_1"]["seed"] == 1 and rows["teacher_1"]["arch"].startswith("transformer") and rows["teacher_1"]["epochs"] == 2
    assert 0 <= ens["bleu_beam"] <= 100 and ens["latency_ms_beam"] > 0 and ens["tokens_per_s"] > 0
    assert rows["student_ensemble_seq_kd"]["method"] == "ensemble→seq_kd" and not rows["student_ensemble_seq_kd"]["teacher_outputs"]["cached"]  # the ensemble's own beams (its combine is in the key: the model's settings)
    assert set(summary["examples"][0]["translations"]) >= {"teacher", "teacher_1", "teacher_ensemble", "teacher_ensemble (beam 3)", "student_ensemble_seq_kd"}
    assert "teacher_ensemble" in (out / "report.html").read_text()
    cfg = TranslationConfig.model_validate(yaml.safe_load((out / "config.yaml").read_text()))
    for row in summary["models"]:  # every row's model rebuilt from the run's config takes its weights (evaluate.py, serve)
        model = cfg.build_model(row, 120, 120)
        load_weights(model, out / row["weights"], row["sha256"])
        assert type(model).__name__ == {"teacher": "LstmSeq2Seq", "teacher_1": "TransformerSeq2Seq", "teacher_ensemble": "Seq2SeqEnsemble"}.get(row["name"], "LstmSeq2Seq")
    assert [t.name for t in load_translators(out, "torch")] == ["student", "teacher"]

    # The same members loaded (weights from run a, whose tokenizers are this run's), the single-teacher baseline too:
    # every teacher row scores as before, and the ensemble's beam outputs are read from the cache (same members, same key).
    loaded = {
        **ENSEMBLE,
        "teacher": {**TINY["teacher"], "weights": str(out / "teacher.safetensors")},
        "distill": {"methods": ["seq_kd"]},
        "strategy": {"name": "ensemble", "baseline": True, "teachers": [{**TRANSFORMER_MEMBER, "weights": str(out / "teacher_1.safetensors")}]},
    }
    run_cli_with(tmp_path / "b", loaded, DISTIL_CACHE=cache)
    again = {m["name"]: m for m in json.loads((tmp_path / "b" / "out" / "summary.json").read_text())["models"]}
    assert list(again) == ["teacher", "teacher_1", "teacher_ensemble", "student_seq_kd", "student_ensemble_seq_kd"]
    for name in ("teacher", "teacher_1", "teacher_ensemble"):
        assert (again[name]["bleu"], again[name]["chrf_beam"], again[name]["test_nll"]) == (rows[name]["bleu"], rows[name]["chrf_beam"], rows[name]["test_nll"])
    assert again["teacher_1"]["method"] == "loaded" and again["teacher_ensemble"]["sha256"] == rows["teacher_ensemble"]["sha256"]
    seq = again["student_ensemble_seq_kd"]["teacher_outputs"]
    assert seq["cached"] and seq["key"] == rows["student_ensemble_seq_kd"]["teacher_outputs"]["key"]
    assert again["student_seq_kd"]["teacher_outputs"]["key"] != seq["key"]  # the single teacher's beam: its own entry


def test_teachers_trained_on_other_tokenizers_or_vocabulary_sizes_exit_2_and_write_nothing(tiny_run, tmp_path):
    out, _ = tiny_run

    def said(result):  # the message as one line (the console wraps it at 80 columns)
        return " ".join(result.output.split())

    member = {**TINY["teacher"], "weights": str(out / "teacher.safetensors")}
    other_split = {**ENSEMBLE, "seed": 1, "strategy": {"name": "ensemble", "teachers": [member]}}  # another split: other subwords, same count
    result = run_cli(tmp_path / "a", other_split)
    assert result.exit_code == 2 and "strategy.teachers.0.weights:" in said(result) and "differs from this run's" in said(result), result.output
    single = run_cli(tmp_path / "b", {**TINY, "seed": 1, "teacher": member})  # a single teacher too
    assert single.exit_code == 2 and said(single).startswith("error: teacher.weights:") and "every teacher must share the run's tokenizers" in said(single), single.output
    (tmp_path / "bare").mkdir()  # weights without their run's tokenizers: the shapes still say the vocabularies differ
    (tmp_path / "bare" / "t.safetensors").write_bytes((out / "teacher.safetensors").read_bytes())
    fewer = {**ENSEMBLE, "data": {**TINY["data"], "vocab_size": 100}, "strategy": {"name": "ensemble", "teachers": [{**member, "weights": str(tmp_path / "bare" / "t.safetensors")}]}}
    shapes = run_cli(tmp_path / "c", fewer)
    assert shapes.exit_code == 2 and "strategy.teachers.0.weights (bilstm 1x32, vocabularies 100 → 100 subwords)" in said(shapes), shapes.output
    assert not any((tmp_path / f / "out").exists() for f in "abc")
