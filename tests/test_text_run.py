"""Real text runs through the CLI: the packaged MiniLM teaches a bag-of-embeddings student on a small
CSV of sentences; a transfer set and augmented views; the trained part of a partly frozen teacher;
bad input (exit 2, nothing written)."""

import json
from pathlib import Path

import pytest
import yaml
from text_helpers import polar_sentences
from typer.testing import CliRunner

from distil.cli import app
from distil.config import load_config
from distil.weights import file_sha256, is_partial

runner = CliRunner()
def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    path.write_text(header + "\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    return path


def config(tmp: Path, file: str = "text.yaml", **changes) -> Path:
    raw = {
        "name": "text-tiny",
        "seed": 0,
        "data": {"name": "text_csv", "path": str(write_csv(tmp / "train.csv", polar_sentences(160, 0))), "val_size": 0.2, "max_length": 24},
        "teacher": {"arch": "minilm", "kwargs": {"train_layers": 0}, "epochs": 3, "batch_size": 16, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0},
        "student": {"arch": "boe", "kwargs": {"embed_dim": 32, "min_count": 1}, "epochs": 15, "batch_size": 16, "optimizer": "adamw", "lr": 2e-2, "weight_decay": 0.0},
        "distill": {"method": "kd"},
        "measure": {"latency_repeats": 3, "throughput_repeats": 1},
    }
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            raw[section] = {**raw.get(section, {}), field: value}
        else:
            raw[key] = value
    path = tmp / file
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    with pytest.MonkeyPatch.context() as patch:  # module scope: conftest's per-test cache folders are not set yet
        patch.setenv("DISTIL_CACHE", str(tmp / "teacher-cache"))
        patch.setenv("DISTIL_DATA_CACHE", str(tmp / "data-cache"))
        result = run_cli("run", config(tmp), "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    return tmp, json.loads((tmp / "out" / "summary.json").read_text()), result.output


def test_text_run_table_has_teacher_and_students_with_text_latencies(text_run):
    tmp, summary, output = text_run
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "student_scratch", "student_kd"]
    assert rows["teacher"]["accuracy"] >= 0.9  # the sentences differ by one clearly polar word
    assert rows["student_kd"]["accuracy"] >= 0.8
    for row in rows.values():
        assert row["tokenize_ms_b1"] > 0
        assert row["latency_ms_b1_text"] == pytest.approx(row["latency_ms_b1"] + row["tokenize_ms_b1"], abs=2e-4)
    assert rows["teacher"]["params"] > 20_000_000 > 100 * rows["student_kd"]["params"]
    assert rows["teacher"]["latency_ms_b1"] > 5 * rows["student_kd"]["latency_ms_b1"]
    assert rows["student_kd"]["teacher_outputs"]["kind"] == "exact"
    assert "sentences/s" in output and "tokenizer minilm" in output
    report = (tmp / "out" / "report.html").read_text()
    assert "Confusion matrices" in report and "could not" not in report
    if rows["student_kd"]["accuracy"] < rows["teacher"]["accuracy"]:  # some sentences differ: listed, decoded from their ids
        assert "Sentences where student_kd and the teacher disagree" in report and "the " in report.split("disagree")[1]
    assert summary["data"]["text"]["tokenizer"] == "minilm" and summary["data"]["sizes"]["train"] == 102


def test_text_transfer_set_and_augmented_views(text_run):
    tmp, summary, _ = text_run
    extra = write_csv(tmp / "extra.csv", [(t, "") for t, _ in polar_sentences(80, 7)], header="text,unused")
    path = config(
        tmp,
        "transfer.yaml",
        **{
            "teacher.weights": str(tmp / "out" / "teacher.safetensors"),
            "data.augment": {"mask": 0.1, "replace": 0.1, "ngram": 0.2},
            "cache.views": 2,
            "strategy": {"name": "unlabeled", "baseline": True, "transfer": {"name": "text_csv", "path": str(extra), "options": {"label_column": None}}},
            "scratch": False,
        },
    )
    result = run_cli("run", path, "--out", tmp / "out2")
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads((tmp / "out2" / "summary.json").read_text())["models"]}
    assert list(rows) == ["teacher", "student_kd", "student_unlabeled_kd"]
    assert rows["teacher"]["accuracy"] == summary["models"][0]["accuracy"]  # the same teacher, loaded
    views = rows["student_kd"]["teacher_outputs"]
    train = summary["data"]["sizes"]["train"]
    assert views["kind"] == "views" and views["views"] == 2 and views["inputs"] == 2 * train
    transfer = rows["student_unlabeled_kd"]["teacher_outputs"]
    assert transfer["kind"] == "views" and transfer["inputs"] == 2 * (train + 80)  # the transfer set, the training sentences included


def test_trainable_weights_of_a_partly_frozen_teacher(text_run, tmp_path):
    tmp, summary, _ = text_run
    result = run_cli("trainable-weights", tmp / "text.yaml", tmp / "out" / "teacher.safetensors", tmp_path / "head.safetensors", "--half")
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert is_partial(tmp_path / "head.safetensors") and written["bytes"] < 10_000  # the head: 384 × 2 + 2 values in fp16
    evaluated = run_cli("eval", tmp / "text.yaml", "--weights", tmp_path / "head.safetensors", "--model", "teacher")
    assert evaluated.exit_code == 0, evaluated.output
    accuracy = json.loads(evaluated.output)["accuracy"]
    assert accuracy == pytest.approx(summary["models"][0]["accuracy"], abs=0.02)  # fp16 rounding of the head only
    student = run_cli("trainable-weights", tmp / "text.yaml", tmp / "out" / "student_kd.safetensors", tmp_path / "s.safetensors", "--model", "student")
    assert student.exit_code == 2 and "no frozen part" in student.output


def test_the_text_demo_config_validates_and_its_artifact_matches():
    cfg = load_config("configs/text/mr/demo.yaml")
    assert cfg.teacher.arch == "minilm" and cfg.strategy.name == "unlabeled"
    weights = Path(cfg.teacher.weights)
    assert weights.stat().st_size < 5 * 2**20 and file_sha256(weights) == cfg.teacher.sha256 and is_partial(weights)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data.options": {"classes": ["pos"]}}, r"label 'neg' is not one of the classes"),
        ({"data.options": {"text_column": "sentence"}}, r"no column 'sentence'"),
        ({"teacher.arch": "hf:/nonexistent/model"}, r"/nonexistent/model is not a folder"),
        ({"data.augment": {"crop_padding": 2}}, r"crop_padding does not apply to text data"),
    ],
)
def test_bad_text_input_exits_2_and_writes_nothing(tmp_path, change, message):
    path = config(tmp_path, **change)
    result = run_cli("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert pytest.importorskip("re").search(message, result.output.replace("\n", " ")), result.output
    assert not (tmp_path / "out").exists()


def test_an_empty_sentence_names_its_row(tmp_path):
    rows = polar_sentences(20, 0)
    rows[6] = ("   ", "pos")
    path = config(tmp_path)
    write_csv(tmp_path / "train.csv", rows)
    result = run_cli("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "row 7" in result.output and "empty" in result.output, result.output
    assert not (tmp_path / "out").exists()


# compress and export of text runs: tests/test_text_export.py; serving them: tests/test_text_serve.py


def test_noisy_student_on_text_noises_with_augmentation_not_gaussian_noise(text_run):
    tmp, _, _ = text_run
    extra = write_csv(tmp / "extra3.csv", [(t, "") for t, _ in polar_sentences(40, 9)], header="text,unused")
    strategy = {"name": "noisy_student", "iterations": 1, "dropout": None, "transfer": {"name": "text_csv", "path": str(extra), "options": {"label_column": None}}}
    common = {"teacher.weights": str(tmp / "out" / "teacher.safetensors"), "scratch": False}
    refused = run_cli("run", config(tmp, "noisy.yaml", **common, strategy={**strategy, "input_noise": 0.1}), "--out", tmp / "noisy")
    assert refused.exit_code == 2 and "text inputs are token ids" in refused.output, refused.output
    assert not (tmp / "noisy").exists()
    path = config(tmp, "noisy.yaml", **common, strategy={**strategy, "input_noise": 0.0}, **{"data.augment": {"mask": 0.15}})
    result = run_cli("run", path, "--out", tmp / "noisy")
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads((tmp / "noisy" / "summary.json").read_text())["models"]}
    assert "student_noisy_1" in rows and rows["student_noisy_1"]["teacher_outputs"]["kind"].startswith("exact")
