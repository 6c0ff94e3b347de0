"""Paired inputs (cross-modal distillation): the teacher sees ``x_teacher``, the student ``x``, of the same samples.

Alignment is checked by construction: row ``i`` of both inputs encodes the sample's id ``i``, so any
operation that moved one side without the other shows up as a mismatch of ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from distil.cli import app
from distil.config import validate_config
from distil.config.data import DataConfig
from distil.data import BatchAugment, Split
from distil.data.labels import keep_labels
from distil.data.pairs import StudentView
from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
from distil.errors import ConfigError, DataError
from distil.experiment import run_experiment

runner = CliRunner()

PAIRED_DIGITS = {
    "name": "paired-digits",
    "seed": 1,
    "data": {"name": "digits", "val_size": 0.15, "student_view": {"downsample": 2, "noise": 0.1}, "inputs": {"teacher": "camera", "student": "sensor"}},
    "teacher": {"arch": "cnn", "kwargs": {"widths": [16, 32]}, "epochs": 3, "batch_size": 64, "lr": 0.05},
    "student": {"arch": "mlp", "kwargs": {"hidden": [32]}, "epochs": 3, "batch_size": 64, "lr": 0.05},
    # A small CRD (64 negatives from the bank) keeps the run to seconds.
    "distill": {"method": "kd", "terms": [{"loss": "CRD", "params": {"nce_k": 64}}]},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}


def ids_split(n: int, labelled: bool = True) -> Split:
    """x ``(n, 3)`` and x_teacher ``(n, 1, 2, 2)`` of another shape, both carrying the sample id in every value."""
    ids = torch.arange(n, dtype=torch.float32)
    return Split(ids[:, None].repeat(1, 3), (ids.long() % 3) if labelled else None, ids[:, None, None, None].repeat(1, 1, 2, 2) * 10)


def assert_aligned(split: Split) -> None:
    assert split.x_teacher is not None
    student_ids, teacher_ids = split.x[:, 0], split.x_teacher[:, 0, 0, 0] / 10
    assert torch.equal(student_ids, teacher_ids)
    assert torch.equal(split.x, student_ids[:, None].repeat(1, 3))  # every value of a row is the same sample
    if split.y is not None:
        assert torch.equal(split.y, student_ids.long() % 3)


@pytest.mark.parametrize("seed", range(8))
def test_split_operations_keep_pairs_aligned(seed):
    g = torch.Generator().manual_seed(seed)
    split = ids_split(int(torch.randint(10, 60, (1,), generator=g)))
    for _ in range(4):  # a random chain of the operations that move rows
        n = len(split)
        choice = int(torch.randint(4, (1,), generator=g))
        if choice == 0:
            split = split.subset(torch.randint(n, (max(1, n // 2),), generator=g))  # repeats and any order
        elif choice == 1:
            mask = torch.rand(n, generator=g) < 0.7
            mask[0] = True
            split = split.subset(mask)
        elif choice == 2:
            split = split.to("cpu")
        else:
            split = split.subset(torch.randperm(n, generator=g))
        assert_aligned(split)
    labelled, unlabeled = keep_labels(ids_split(30), 3, per_class=2, seed=seed)
    assert_aligned(labelled)
    assert unlabeled.y is None and len(labelled) + len(unlabeled) == 30
    assert_aligned(unlabeled)
    teacher_side = labelled.for_teacher()
    assert teacher_side.x_teacher is None and torch.equal(teacher_side.x, labelled.x_teacher) and torch.equal(teacher_side.y, labelled.y)


def test_split_refuses_teacher_inputs_of_another_count():
    with pytest.raises(DataError, match=r"x_teacher has 4 samples but x has 5"):
        Split(torch.zeros(5, 3), None, torch.zeros(4, 1, 2, 2))


def paired_npz(path: Path, n: int = 90, teacher_rows: int | None = None) -> Path:
    """x: 4-sample signals of value id; x_teacher: 1×6×6 images of value 2·id + 1; y = id mod 3."""
    ids = np.arange(n, dtype=np.float32)
    rows = n if teacher_rows is None else teacher_rows
    np.savez(path, x=np.repeat(ids[:, None], 4, axis=1), y=(np.arange(n) % 3).astype(np.int64), x_teacher=np.repeat(2 * ids[:rows, None, None] + 1, 6, 1).repeat(6, 2))
    return path


def test_npz_pairs_stay_aligned_through_carving_normalization_and_label_subsets(tmp_path):
    file = paired_npz(tmp_path / "p.npz")
    data = DataConfig(name="npz", path=str(file), val_size=10, labels_per_class=5, inputs={"teacher": "camera", "student": "sensor"}).load(seed=4)
    assert data.input_shape == (1, 4) and data.pairing is not None and data.pairing.input_shape == (1, 6, 6)
    assert data.describe()["paired"] == {"teacher": {"input": "camera", "input_shape": [1, 6, 6]}, "student": {"input": "sensor", "input_shape": [1, 4]}}
    (m, s), (tm, ts) = (data.mean[0], data.std[0]), (data.pairing.mean[0], data.pairing.std[0])
    seen = []
    for split in (data.train, data.val, data.test, data.unlabeled):
        student_ids = split.x[:, 0, 0] * s + m  # undo each side's own normalization
        teacher_ids = (split.x_teacher[:, 0, 0, 0] * ts + tm - 1) / 2
        assert torch.allclose(student_ids, teacher_ids, atol=1e-3)
        if split.y is not None:
            assert torch.equal(split.y, student_ids.round().long() % 3)
        seen += student_ids.round().long().tolist()
    assert sorted(seen) == list(range(90))  # every sample once, in one of the splits
    assert len(data.train) == 15 and data.unlabeled.y is None
    teacher = data.for_teacher()
    assert teacher.input_shape == (1, 6, 6) and teacher.mean == data.pairing.mean and teacher.train.x_teacher is None and not teacher.paired


def test_student_view_pools_and_adds_noise_fixed_per_sample():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert StudentView(downsample=2)(x, torch.Generator()).item() == 2.5  # (1 + 2 + 3 + 4) / 4
    clean = DataConfig(name="digits", student_view={"downsample": 2}).load(seed=0)
    assert clean.input_shape == (1, 4, 4) and clean.pairing.input_shape == (1, 8, 8)
    assert torch.allclose(clean.train.x, torch.nn.functional.avg_pool2d(clean.train.x_teacher, 2))
    noisy = DataConfig(name="digits", student_view={"downsample": 2, "noise": 0.5}).load(seed=0)
    residual = noisy.train.x - torch.nn.functional.avg_pool2d(noisy.train.x_teacher, 2)
    assert residual.std().item() == pytest.approx(0.5, rel=0.05)
    other_run = DataConfig(name="digits", student_view={"downsample": 2, "noise": 0.5}).load(seed=7)

    def test_noise(data):
        return data.test.x - torch.nn.functional.avg_pool2d(data.test.x_teacher, 2)

    assert torch.allclose(test_noise(other_run), test_noise(noisy), atol=1e-5)  # the test samples' noise is the same for every run seed
    assert "2×2 average pooling (8×8 → 4×4)" in noisy.describe()["paired"]["student"]["derived"]


def test_student_view_on_text_is_refused(tmp_path):
    file = tmp_path / "s.csv"
    file.write_text("text,label\n" + "".join(f'"sentence {i} is {"nice" if i % 2 else "awful"}",{"good" if i % 2 else "bad"}\n' for i in range(12)))
    with pytest.raises(ConfigError, match=r"data\.student_view .*text"):
        DataConfig(name="text_csv", path=str(file), val_size=2, student_view={"downsample": 2}).load(seed=0)
    with pytest.raises(ConfigError, match=r"data\.student_view\.downsample: 9 is larger than the inputs"):
        DataConfig(name="digits", student_view={"downsample": 9}).load(seed=0)


def test_teacher_outputs_come_from_the_teachers_inputs():
    """A teacher that only runs on 1×8×8 inputs, a student batch of 1×4×4: every source reads x_teacher rows."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x_teacher, x = torch.randn(40, 1, 8, 8), torch.randn(40, 1, 4, 4)
    index = torch.tensor([5, 0, 39, 5])
    expected = teacher(x_teacher[index]).detach()
    for settings, augment, kind in [
        (CacheSettings(store=False), None, "exact"),
        (CacheSettings(store=False), BatchAugment(crop_padding=1), "exact"),  # the teacher's inputs are not augmented
        (CacheSettings(store=False, mode="views"), BatchAugment(crop_padding=1), "exact"),
        (CacheSettings(store=False, mode="online"), None, "online"),
        (CacheSettings(store=False, max_bytes=10), None, "online"),
    ]:
        outputs = teacher_outputs(teacher, x, augment, settings=settings, teacher_x=x_teacher)
        assert outputs.info["kind"] == kind and outputs.info["paired"]
        assert torch.allclose(outputs(index, x[index])["logits"], expected, atol=1e-5)
    with pytest.raises(RuntimeError):  # the teacher cannot run on the student's inputs: the check above means something
        teacher(x)


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("paired") / "run"
    summary = run_experiment(validate_config(PAIRED_DIGITS), out, methods=["kd", "crd"])
    return out, summary


def test_paired_digits_run_trains_each_model_on_its_own_inputs(paired_run):
    out, summary = paired_run
    models = {m["name"]: m for m in summary["models"]}
    assert list(models) == ["teacher", "student_scratch", "student_kd", "student_crd"]
    assert summary["data"]["input_shape"] == [1, 4, 4]
    assert summary["data"]["paired"]["teacher"] == {"input": "camera", "input_shape": [1, 8, 8]}
    assert models["teacher"]["accuracy"] > 0.85  # the 8×8 teacher, evaluated on its own 8×8 test inputs
    for name in ("student_kd", "student_crd"):
        assert models[name]["teacher_outputs"]["paired"] and models[name]["accuracy"] > 0.5
    assert models["student_crd"]["teacher_outputs"]["taps"] != ["logits"]  # CRD read the teacher's embedding
    assert (out / "student_crd.objective.safetensors").is_file()  # CRD's heads bridge the 32-d student and the teacher's embedding
    from distil.report.html import render_report
    from distil.report.table import inputs_line

    line = inputs_line(summary)
    assert line.startswith("inputs — teacher: camera 1×8×8; students: sensor 1×4×4 (2×2 average pooling")
    assert "inputs — teacher: camera 1×8×8" in render_report(out)


def test_paired_run_from_the_cli_shows_both_inputs(tmp_path):
    raw = {**PAIRED_DIGITS, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 1}, "student": {**PAIRED_DIGITS["student"], "epochs": 1}}
    raw["distill"] = {"method": "at"}  # a feature term between 4×4 and 2×2 maps: the connector resizes
    raw["student"] = {"arch": "cnn", "kwargs": {"widths": [8, 16]}, "epochs": 1, "batch_size": 64}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "teacher: camera 1×8×8; students: sensor 1×4×4" in " ".join(result.output.split())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["models"][-1]["teacher_outputs"]["paired"]
    for role, row in (("teacher", 0), ("student", -1)):  # each model evaluated on its own test inputs
        weights = tmp_path / "out" / summary["models"][row]["weights"]
        evaluated = runner.invoke(app, ["eval", str(path), "--weights", str(weights), "--model", role])
        assert evaluated.exit_code == 0, evaluated.output
        assert json.loads(evaluated.output)["accuracy"] == pytest.approx(summary["models"][row]["accuracy"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"name": "npz", "path": "p.npz"}}, "array 'x_teacher' has 89 samples but 'x' has 90"),
        ({"strategy": {"name": "self_supervised"}}, "strategy: 'self_supervised' does not work on paired data"),
        ({"strategy": {"name": "mutual", "teacher_trains": True}}, "teacher_trains does not work on paired data"),
        ({"data": {"name": "digits", "inputs": {"teacher": "a", "student": "b"}}}, "data.inputs names the two inputs of paired data"),
        ({"data": {**PAIRED_DIGITS["data"], "augment": {"mixup": 1.0}}}, "is paired: the teacher sees its own, un-augmented input"),
    ],
)
def test_bad_paired_input_exits_2_and_writes_nothing(tmp_path, change, message):
    paired_npz(tmp_path / "p.npz", teacher_rows=89)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**PAIRED_DIGITS, **change}))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_serving_a_paired_run_serves_the_student_only(paired_run):
    """A request carries one input, the student's; the teacher would need the other modality."""
    from distil.serve.repository import _from_run_dir

    out, _ = paired_run
    served = _from_run_dir(out, "torch", "student")
    assert [m.role for m in served] == ["student"]
    assert tuple(served[0].input.shape) == (1, 4, 4)


def test_ensemble_members_see_the_teachers_inputs(tmp_path):
    raw = {**PAIRED_DIGITS, "scratch": False, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 2}, "student": {**PAIRED_DIGITS["student"], "epochs": 2}}
    # An MLP member built for the student's 4×4 inputs would have 16 inputs and fail on the 8×8 teacher inputs.
    raw["strategy"] = {"name": "ensemble", "teachers": [{"arch": "mlp", "kwargs": {"hidden": [32]}, "epochs": 2, "batch_size": 64, "lr": 0.1}]}
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    models = {m["name"]: m for m in summary["models"]}
    assert models["teacher_1"]["params"] == 64 * 32 + 32 + 32 * 10 + 10  # built for 1×8×8 inputs
    assert models["teacher_ensemble"]["accuracy"] > 0.8
    assert models["student_ensemble_kd"]["teacher_outputs"]["paired"]
    # A transfer set holds inputs of one kind: refused on paired data, before anything is written.
    np.savez(tmp_path / "extra.npz", x=np.zeros((20, 4, 4), np.float32))
    raw["strategy"] = {**raw["strategy"], "transfer": {"name": "npz", "path": str(tmp_path / "extra.npz")}}
    with pytest.raises(ConfigError, match="is paired"):
        run_experiment(validate_config(raw), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_tf_kd_needs_no_teacher_inputs_and_runs_on_paired_data(tmp_path):
    raw = {**PAIRED_DIGITS, "scratch": False, "strategy": {"name": "tf_kd"}, "distill": {"method": "kd"}, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 1}}
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    assert summary["models"][-1]["name"] == "student_tfkd_kd" and summary["models"][-1]["accuracy"] > 0.3


def test_takd_assistants_are_students_taught_first_by_the_teachers_inputs(tmp_path):
    """The assistant (an MLP built for the 4×4 sensor) learns from the 8×8 teacher, then teaches the student on 4×4."""
    raw = {**PAIRED_DIGITS, "scratch": False, "distill": {"method": "kd"}, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 3}}
    raw["student"] = {**PAIRED_DIGITS["student"], "epochs": 8, "lr": 0.1}
    raw["strategy"] = {"name": "takd", "assistants": [{"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 8, "batch_size": 64, "lr": 0.1}]}
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "assistant_1", "student_takd_kd"]
    assert rows["assistant_1"]["params"] == 16 * 64 + 64 + 64 * 10 + 10  # built for 1×4×4
    assert rows["assistant_1"]["teacher_outputs"]["paired"]  # the teacher saw its own inputs
    assert not rows["student_takd_kd"]["teacher_outputs"].get("paired")  # the assistant saw the student's
    assert rows["student_takd_kd"]["accuracy"] > 0.5


def test_mutual_cohort_learns_on_the_students_inputs(tmp_path):
    raw = {**PAIRED_DIGITS, "scratch": False, "distill": {"method": "kd"}, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 1}, "strategy": {"name": "mutual", "students": 2}}
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    rows = {m["name"]: m for m in summary["models"]}
    assert rows["student_dml1"]["params"] == rows["student_dml2"]["params"] == 16 * 32 + 32 + 32 * 10 + 10
    assert rows["student_dml1"]["accuracy"] > 0.3 and rows["student_dml2"]["accuracy"] > 0.3


def test_specialists_see_the_teachers_inputs(tmp_path):
    """Specialists of the generalist's architecture start from its 8×8 weights and train on 8×8 inputs."""
    raw = {**PAIRED_DIGITS, "scratch": False, "distill": {"method": "kd"}, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 2},
           "student": {**PAIRED_DIGITS["student"], "epochs": 8, "lr": 0.1}, "strategy": {"name": "specialists", "count": 1, "size": 3}}  # fmt: skip
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    rows = {m["name"]: m for m in summary["models"]}
    assert rows["teacher_specialists"]["accuracy"] > 0.8  # evaluated on the 8×8 test inputs
    assert rows["specialist_1"]["accuracy"] > 0.5
    assert rows["student_specialists_kd"]["teacher_outputs"]["paired"] and rows["student_specialists_kd"]["accuracy"] > 0.5


def test_born_again_generations_are_students_on_the_students_inputs(tmp_path):
    """Every born-again teacher is a student: the generations all see the 4×4 sensor inputs, the run's
    8×8 teacher none of their batches (an MLP student fed 8×8 inputs would fail on its 16 inputs)."""
    raw = {**PAIRED_DIGITS, "strategy": {"name": "born_again", "generations": 2}, "distill": {"method": "kd"}, "teacher": {**PAIRED_DIGITS["teacher"], "epochs": 1}}
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "student_scratch", "student_ban1", "student_ban2"]
    for name in ("student_ban1", "student_ban2"):
        assert rows[name]["params"] == rows["student_scratch"]["params"] == 16 * 32 + 32 + 32 * 10 + 10  # built for 1×4×4
        assert not rows[name]["teacher_outputs"].get("paired") and rows[name]["accuracy"] > 0.15  # above chance (0.1)
    assert summary["data"]["paired"]["student"]["input_shape"] == [1, 4, 4]


def test_compressing_a_paired_run_keeps_the_teacher_on_its_own_inputs(paired_run, tmp_path):
    """Prune (with its recovery KD) and export the sensor student; the teacher's cache, probe and
    re-measurement use the 8×8 camera inputs, the student's rows the 4×4 sensor inputs."""
    import shutil

    from distil.compress.chain import Chain, recovery_objective
    from distil.compress.pipeline import load_run
    from distil.engine.evaluate import accuracy

    out = tmp_path / "run"
    shutil.copytree(paired_run[0], out)
    config, summary, data, teacher, student, arch, base = load_run(out)
    seen = data.for_teacher().test
    assert accuracy(teacher, seen.x, seen.y) == pytest.approx(summary["models"][0]["accuracy"])
    chain = Chain(config=config, data=data, teacher=teacher, model=student, name=base, out=out, console=None, arch=arch)
    outputs = chain.teacher_outputs(config.data.augment.build(data))
    assert outputs.info["paired"]
    index = torch.arange(5)
    with torch.no_grad():
        expected = teacher(data.train.x_teacher[:5])
    assert torch.allclose(outputs(index, data.train.x[:5])["logits"], expected, atol=1e-5)
    recovery_objective(config, student, teacher, data)  # probes the teacher on 8×8, the student on 4×4

    steps = ["--steps", "prune,onnx", "--epochs", "1", "--sparsity", "0.5"]
    result = runner.invoke(app, ["compress", str(out), *steps])
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads((out / "summary.json").read_text())["models"]}
    assert {"student_kd.pruned", "student_kd.pruned.onnx"} <= set(rows)
    assert rows["student_kd.pruned"]["accuracy"] > 0.5 and rows["student_kd.pruned.onnx"]["accuracy"] == pytest.approx(rows["student_kd.pruned"]["accuracy"], abs=0.02)
