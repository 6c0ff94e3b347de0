"""DIR/report.html: calibration and agreement maths on hand-computed values, and real tiny runs on digits."""

import json
import re

import numpy as np
import pytest
import torch
from test_run import TINY, config_file, run_cli

from distil.config import validate_config
from distil.data import load_dataset
from distil.engine.evaluate import predict_logits
from distil.report.analysis import (
    agreement,
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    pareto_front,
)
from distil.report.html import REPORT
from distil.weights import load_weights

# ------------------------------------------------------------------------------------------------ maths


def test_ece_golden_value():
    # 15 bins of width 1/15: 0.10 and 0.12 fall in bin 1, 0.55 and 0.58 in bin 8, 0.90 in bin 13.
    conf = np.array([0.10, 0.12, 0.55, 0.58, 0.90])
    correct = np.array([1, 0, 1, 1, 0])
    # bin 1: 2/5·|0.5 − 0.11| = 0.156; bin 8: 2/5·|1 − 0.565| = 0.174; bin 13: 1/5·|0 − 0.9| = 0.18
    assert expected_calibration_error(conf, correct) == pytest.approx(0.51, abs=1e-12)
    b = calibration_bins(conf, correct)
    assert b["count"].tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0]
    assert b["confidence"][8] == pytest.approx(0.565) and b["accuracy"][1] == 0.5
    assert np.isnan(b["accuracy"][0])


def test_ece_properties():
    # perfectly calibrated bins give 0; upper edges belong to their bin ((lo, hi]), 0 and 1 to the end bins
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0
    assert expected_calibration_error(np.array([0.5, 0.5]), np.array([1, 0]), bins=2) == 0.0
    assert calibration_bins(np.array([0.0, 0.5, 1.0]), np.array([0, 0, 0]), bins=2)["count"].tolist() == [2, 1]
    # always confident and always wrong: ECE is the confidence
    assert expected_calibration_error(np.full(7, 0.8), np.zeros(7)) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([]), np.array([]))


def test_agreement_golden_values():
    teacher, student, labels = np.array([0, 1, 2, 3]), np.array([0, 1, 0, 3]), np.array([0, 2, 0, 3])
    a = agreement(teacher, student, labels)
    assert a == {"agreement": 0.75, "agreement_teacher_wrong": 0.5, "teacher_wrong": 2, "student_right_where_teacher_wrong": 0.5}
    perfect = agreement(labels, labels, labels)
    assert perfect["agreement"] == 1.0 and perfect["teacher_wrong"] == 0 and np.isnan(perfect["agreement_teacher_wrong"])


def test_confusion_matrix_and_pareto_front():
    cm = confusion_matrix(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    # (x lower is better, y higher is better): (3, 93) is beaten by (2, 95)
    assert pareto_front([(1, 90), (2, 95), (0.5, 80), (3, 93)]) == [2, 0, 1]


# ------------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    raw = {**TINY, "compress": {"steps": ["onnx"]}}
    result = run_cli("run", config_file(tmp, raw), "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    return tmp / "out", raw


def _ece_text(out, raw, name, arch_cfg):
    cfg = validate_config(raw)
    data = load_dataset("digits", val_size=cfg.data.val_size, seed=cfg.seed)
    model = load_weights(arch_cfg(cfg).build(data, cfg.seed), out / f"{name}.safetensors")
    probs = torch.softmax(predict_logits(model, data.test.x), 1)
    ece = expected_calibration_error(probs.max(1).values.numpy(), (probs.argmax(1) == data.test.y).numpy())
    return f"{100 * ece:.2f} %"


def test_run_writes_a_self_contained_report(reported_run):
    out, raw = reported_run
    page = (out / REPORT).read_text()
    summary = json.loads((out / "summary.json").read_text())
    names = [m["name"] for m in summary["models"]]
    assert "student_kd.onnx" in names  # the Pareto view has a compressed student
    for name in names:
        assert f">{name}</td>" in page
    assert "test acc" in page and "latency b=1" in page
    # curves, Pareto, reliability, confusion: embedded, nothing fetched from elsewhere
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r'(src|href)="(http|//)', page)
    assert "could not" not in page
    assert "ECE (15 bins)" in page and "agrees with teacher" in page
    # the ECE printed is the one of the saved weights on the test split
    assert _ece_text(out, raw, "teacher", lambda c: c.teacher) in page
    assert _ece_text(out, raw, "student_kd", lambda c: c.student) in page


def test_report_command_regenerates(reported_run):
    out, _ = reported_run
    before = (out / REPORT).read_text()
    (out / REPORT).unlink()
    result = run_cli("report", out)
    assert result.exit_code == 0, result.output
    after = (out / REPORT).read_text()
    # the same table again (the plots are compared by eye, not by PNG bytes)
    table = lambda page: page.split("<h2>Training curves")[0]
    assert table(after) == table(before)


def test_report_without_summary_exits_2(tmp_path):
    result = run_cli("report", tmp_path)
    assert result.exit_code == 2
    assert "summary.json" in result.output and "Traceback" not in result.output


def test_a_failed_report_keeps_the_run(tmp_path, monkeypatch):
    import distil.report.html

    def broken(run_dir):
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(distil.report.html, "render_report", broken)
    raw = {**TINY, "scratch": False}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "summary.json").is_file() and not (tmp_path / "out" / REPORT).exists()
    assert "report: not written" in result.output and "no fonts today" in result.output


def test_point_names_do_not_overlap_when_points_crowd():
    """A model and its ONNX export share an accuracy and nearly a latency: their names are stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Annotation

    from distil.report.plots import _label_points

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    points = [(0.050, 91.4), (0.052, 91.4), (0.055, 91.3), (0.30, 91.4), (0.31, 91.0), (0.1, 89.8), (0.105, 89.8), (2.0, 93.7)]
    ax.scatter(*zip(*points))
    ax.set_xscale("log")
    _label_points(ax, points, [f"student_kd.variant_{i}" for i in range(len(points))])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if isinstance(t, Annotation)]
    plt.close(fig)
    assert len(boxes) == len(points)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_the_report_looks_into_the_strategy_student_when_there_is_one():
    from distil.report.analysis import main_student

    def rows(*names):
        return [{"name": n, "role": "teacher" if n == "teacher" else "student", "method": "scratch" if n.endswith("scratch") else "kd"} for n in names]

    assert main_student({"models": rows("teacher", "student_scratch", "student_kd", "student_unlabeled_kd"), "strategy": "unlabeled"}, "kd") == "student_unlabeled_kd"
    assert main_student({"models": rows("teacher", "student_scratch", "student_kd", "student_dkd"), "strategy": "none"}, "kd") == "student_kd"
    assert main_student({"models": rows("teacher", "student_scratch", "student_dkd")}, "kd") == "student_dkd"
