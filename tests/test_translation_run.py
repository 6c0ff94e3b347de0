"""`distil run` on a translation config: tiny models on a few hundred Bible verse pairs, end to end; bad input."""

import json

import pytest
from strategy_helpers import run_cli

TINY = {
    "kind": "translation",
    "name": "tiny",
    "data": {"limit": 300, "val_size": 30, "test_size": 30, "vocab_size": 120, "max_length": 24, "max_words": 10},
    "teacher": {"bidirectional": True, "embed": 24, "hidden": 32, "epochs": 2, "batch_size": 32, "lr": 0.01},
    "student": {"embed": 16, "hidden": 16, "epochs": 1, "batch_size": 32, "lr": 0.01},
    "evaluate": {"latency_sentences": 2, "examples": 2, "beam": 3},
}


def test_one_command_runs_teacher_and_every_student_and_writes_the_table(tmp_path):
    result = run_cli(tmp_path, TINY)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
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
    assert summary["data"]["sizes"] == {"test": 30, "val": 30, "train": 240}
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    teacher_nll = [-e["val_accuracy"] for e in epochs if e["model"] == "teacher"]
    assert len(teacher_nll) == 2 and teacher_nll[1] < teacher_nll[0]  # the teacher learns
    ex = summary["examples"][0]
    assert set(ex["translations"]) >= {"teacher", "teacher (beam 3)", "student_seq_kd"} and ex["reference"]
    assert "BLEU greedy" in result.output and "student_seq_word_kd" in result.output
    page = (out / "report.html").read_text()
    assert "Example translations" in page and ex["source"].split()[0] in page
    assert (out / "source_tokenizer.json").is_file() and (out / "target_tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distill": {"methods": ["seq_kdd"]}}, "did you mean 'seq_kd'"),
        ({"student": {"hiden": 8}}, "did you mean 'hidden'"),
        ({"data": {"source": "pairs_file"}}, "data.path is required"),
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
