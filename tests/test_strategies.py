"""Training strategies: each runs end to end on digits in seconds and does what makes it that strategy."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from strategy_helpers import changed, run_cli
from torch import nn
from typer.testing import CliRunner

from distil.cli import app
from distil.config import validate_config
from distil.data import BatchAugment, Split, load_dataset
from distil.data.unlabeled import load_unlabeled
from distil.engine.objective import task_objective
from distil.engine.trainer import TrainSettings, fit
from distil.errors import ConfigError, DataError
from distil.experiment import run_experiment
from distil.strategies import list_strategies
from distil.strategies.ensemble import Ensemble, check_class_counts
from distil.strategies.frozen_backbone import FrozenBackbone
from distil.strategies.mutual import Cohort, PeerOutputs, mutual_objective
from distil.strategies.self_distill import VirtualTeacher
from distil.strategies.specialists import SpecialistEnsemble, confusable_subsets
from distil.strategies.transfer import NoisyInputs

TRAIN = {"epochs": 1, "batch_size": 64, "lr": 0.1}
BASE = {
    "name": "tiny",
    "seed": 1,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [32]}, **TRAIN},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, **TRAIN},
    "scratch": False,
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}
runner = CliRunner()


def config(strategy: dict, **changes):
    return validate_config(changed(BASE, strategy, **changes))


def run(tmp_path: Path, strategy: dict, **changes) -> dict:
    summary = run_experiment(config(strategy, **changes), tmp_path / "out")
    return {m["name"]: m for m in summary["models"]}


def metrics(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]


def cli(tmp_path: Path, strategy: dict, **changes):
    return run_cli(tmp_path, changed(BASE, strategy, **changes))


# --- listing and config -------------------------------------------------------------------------------


def test_every_strategy_is_listed_and_has_an_example_config():
    listed = list_strategies()
    assert set(listed) == {"ensemble", "unlabeled", "noisy_student", "born_again", "tf_kd", "takd", "mutual", "frozen_backbone", "specialists", "self_supervised", "semi_supervised", "bit"}
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0 and "born_again" in result.output
    examples = Path(__file__).parent.parent / "configs" / "strategies"
    named = {yaml.safe_load(p.read_text())["strategy"]["name"] for p in examples.glob("*.yaml")}
    assert named == set(listed)


def test_strategy_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"strategy.weight: unknown key \(did you mean 'weights'\?\); accepted keys here: name, baseline, teachers"):
        config({"name": "ensemble", "teachers": [BASE["teacher"]], "weight": [1, 1]})
    with pytest.raises(ConfigError, match="weights has 3 entries but the ensemble has 2 members"):
        config({"name": "ensemble", "teachers": [BASE["teacher"]], "weights": [1, 1, 1]})
    with pytest.raises(ConfigError, match="teacher: required"):
        config({"name": "ensemble", "teachers": [BASE["teacher"]]}, teacher=None)
    assert config({"name": "tf_kd"}, teacher=None).teacher is None  # teacher-free strategies need none
    with pytest.raises(ConfigError, match="teacher_trains is true but the config has no teacher"):
        run_experiment(config({"name": "mutual", "teacher_trains": True}, teacher=None), "/nonexistent/never-made")
    assert config({"name": "none"}).strategy.name == "none"
    with pytest.raises(ConfigError, match=r"strategy: .*unknown strategy 'ensmble' \(did you mean 'ensemble'\?\)"):
        config({"name": "ensmble"})


# --- 1. ensembles ---------------------------------------------------------------------------------------


def test_ensemble_soft_targets_are_the_weighted_mean_of_the_members():
    torch.manual_seed(0)
    members = [nn.Linear(5, 4) for _ in range(3)]
    x = torch.randn(7, 5)
    for T in (1.0, 4.0):
        ensemble = Ensemble(members, [1.0, 2.0, 1.0], T=T)
        mean = sum(w * F.softmax(m(x) / T, dim=1) for w, m in zip([0.25, 0.5, 0.25], members))
        # what KD(T) reads from the ensemble's logits is exactly the mean of the members' soft targets
        assert torch.allclose(F.softmax(ensemble(x) / T, dim=1), mean, atol=1e-6)
    by_logits = Ensemble(members, combine="logits")(x)
    assert torch.allclose(by_logits, sum(m(x) for m in members) / 3, atol=1e-6)


def test_ensemble_members_must_have_the_same_classes():
    with pytest.raises(ConfigError, match="teacher_1.*outputs \\(5,\\) logits.*10 classes"):
        check_class_counts([nn.Linear(3, 10), nn.Linear(3, 5)], ["teacher", "teacher_1"], torch.randn(2, 3), 10)


def test_ensemble_member_with_other_class_count_exits_2(tmp_path):
    from distil.models import build_model
    from distil.weights import save_weights

    save_weights(build_model("mlp", input_shape=(1, 8, 8), num_classes=5, hidden=[16]), tmp_path / "five.safetensors")
    member = {"arch": "mlp", "kwargs": {"hidden": [16]}, "weights": str(tmp_path / "five.safetensors")}
    result = cli(tmp_path, {"name": "ensemble", "teachers": [member]})
    assert result.exit_code == 2 and "teacher_1 (mlp, 10 classes)" in result.output and "file (5, 16) vs model (10, 16)" in result.output
    assert not (tmp_path / "out").exists()  # checked before the run directory is made


def test_ensemble_end_to_end_with_per_member_feature_terms(tmp_path):
    member = {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN, "seed": 7}
    rows = run(tmp_path, {"name": "ensemble", "teachers": [member]}, distill={"method": "rkd"})
    assert list(rows) == ["teacher", "teacher_1", "teacher_ensemble", "student_ensemble_rkd"]
    assert rows["teacher_ensemble"]["role"] == "ensemble" and rows["teacher_ensemble"]["params"] == rows["teacher"]["params"] + rows["teacher_1"]["params"]
    terms = next(m["terms"] for m in metrics(tmp_path) if m["model"] == "student_ensemble_rkd")
    # one RKD term per member (CRD-EN style sum), reading each member's embedding
    assert {"rkd@fc:input>members.0.fc:input", "rkd@fc:input>members.1.fc:input", "ce"} == set(terms)


def test_ensemble_student_learns_on_a_transfer_set_beside_one_teachers_student(tmp_path):
    """strategy.transfer: the student trains on the labelled rows + the unlabeled inputs (CE on the labelled
    ones only); baseline adds the same student on the same rows from the first teacher alone."""
    path = digits_like_npz(tmp_path, n=200)
    member = {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN, "seed": 7}
    rows = run(tmp_path, {"name": "ensemble", "teachers": [member], "baseline": True, "transfer": {"name": "npz", "path": str(path)}})
    assert list(rows) == ["teacher", "student_kd", "teacher_1", "teacher_ensemble", "student_ensemble_kd", "student_transfer_kd"]
    assert rows["student_ensemble_kd"]["method"] == "ensemble+transfer→kd" and rows["student_transfer_kd"]["method"] == "teacher+transfer→kd"
    labelled = len(load_dataset("digits", val_size=0.15, seed=1).train)
    for name in ("student_ensemble_kd", "student_transfer_kd"):
        assert set(next(m["terms"] for m in metrics(tmp_path) if m["model"] == name)) == {"kd", "ce"}
        assert rows[name]["teacher_outputs"]["inputs"] == labelled + 200
    assert rows["student_kd"]["teacher_outputs"]["inputs"] == labelled  # the ordinary baseline: labelled rows alone


def test_a_label_term_that_cannot_skip_unlabeled_rows_is_refused_before_anything_is_written(tmp_path):
    """DKD needs every row's label; a transfer set's rows have none: exit 2 before the members train."""
    path = digits_like_npz(tmp_path, n=50)
    member = {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN}
    result = cli(tmp_path, {"name": "ensemble", "teachers": [member], "transfer": {"name": "npz", "path": str(path)}}, distill={"method": "dkd"})
    assert result.exit_code == 2, result.output
    assert "term DKD needs a label on every row" in " ".join(result.output.split()) and "50 of the" in result.output
    assert not (tmp_path / "out").exists()


# --- 6. unlabeled transfer sets, Noisy Student ----------------------------------------------------------


def digits_like_npz(tmp_path: Path, shape=(8, 8), n=300) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(n, *shape)).astype(np.float32)
    path = tmp_path / "unlabeled.npz"
    np.savez(path, x=x)
    return path


def test_unlabeled_npz_with_only_x_trains_on_teacher_targets_alone(tmp_path):
    path = digits_like_npz(tmp_path)
    rows = run(tmp_path, {"name": "unlabeled", "transfer": {"name": "npz", "path": str(path), "include_train": False}})
    assert list(rows) == ["teacher", "student_unlabeled_kd"]
    assert rows["student_unlabeled_kd"]["teacher_outputs"]["kind"] == "exact"
    terms = next(m["terms"] for m in metrics(tmp_path) if m["model"] == "student_unlabeled_kd")
    assert set(terms) == {"kd"}  # the label term is dropped: the transfer set has no labels


def test_unlabeled_with_augmentation_is_labelled_from_views_or_on_the_fly(tmp_path):
    """Augmented transfer inputs get the teacher's targets from pre-drawn views, or online when asked."""
    path = digits_like_npz(tmp_path, n=100)
    data = {**BASE["data"], "augment": {"crop_padding": 1}}
    rows = run(tmp_path / "views", {"name": "unlabeled", "transfer": {"name": "npz", "path": str(path)}}, data=data)
    assert rows["student_unlabeled_kd"]["teacher_outputs"]["kind"] == "views"
    rows = run(tmp_path / "online", {"name": "unlabeled", "transfer": {"name": "npz", "path": str(path)}}, data=data, cache={"mode": "online"})
    assert rows["student_unlabeled_kd"]["teacher_outputs"]["kind"] == "online"


def test_unlabeled_set_of_another_shape_exits_2(tmp_path):
    path = digits_like_npz(tmp_path, shape=(28, 28))
    result = cli(tmp_path, {"name": "unlabeled", "transfer": {"name": "npz", "path": str(path)}})
    assert result.exit_code == 2 and "shape (1, 28, 28)" in result.output and "(1, 8, 8)" in result.output


def test_unlabeled_folder_of_images_in_any_layout(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (12, 10), dtype=np.uint8)).save(tmp_path / "imgs" / ("deeper" if i else "") / f"{i}.png")
    data = load_dataset("digits")
    split = load_unlabeled("folder", data, path=tmp_path / "imgs")
    assert split.y is None and split.x.shape == (3, 1, 8, 8)  # resized to the labelled data's size


def test_generated_mnist1d_transfer_set_must_not_overlap_the_test_split():
    data = load_dataset("mnist1d", num_samples=100)
    other = load_unlabeled("mnist1d", data, num_samples=100, generation_seed=1)
    assert other.y is None and len(other) == 100 and other.x.shape[1:] == data.train.x.shape[1:]
    with pytest.raises(DataError, match="20 of its 100 samples are also in the test split"):
        load_unlabeled("mnist1d", data, num_samples=100)  # the same generation seed: the same samples


def test_noisy_student_iterates_and_noises_only_the_student(tmp_path):
    noise = NoisyInputs(BatchAugment(), 0.5)
    x = torch.zeros(4, 1, 8, 8)
    assert noise.enabled and not torch.equal(noise(x, torch.Generator().manual_seed(0)), x)
    path = digits_like_npz(tmp_path)
    strategy = {"name": "noisy_student", "iterations": 2, "dropout": 0.2, "transfer": {"name": "npz", "path": str(path)}}
    rows = run(tmp_path, strategy)
    assert list(rows) == ["teacher", "student_noisy_1", "student_noisy_2"]
    weights = load_file(tmp_path / "out" / "student_noisy_2.safetensors")
    assert weights  # the student factory took the dropout
    assert {m["model"] for m in metrics(tmp_path)} == {"teacher", "student_noisy_1", "student_noisy_2"}


# --- 4. self-distillation --------------------------------------------------------------------------------


def test_born_again_generations_teach_the_next_without_a_teacher(tmp_path):
    rows = run(tmp_path, {"name": "born_again", "generations": 2}, teacher=None, scratch=True)
    assert list(rows) == ["student_scratch", "student_ban1", "student_ban2"]
    assert len({r["params"] for r in rows.values()}) == 1  # one architecture throughout
    assert len({r["sha256"] for r in rows.values()}) == 3


def test_virtual_teacher_of_tf_kd():
    labels = torch.tensor([2, 0])
    logits = VirtualTeacher(labels, 4, 0.7)(torch.tensor([1, 0]), torch.empty(2))["logits"]
    expected = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]])
    assert torch.allclose(F.softmax(logits, dim=1), expected, atol=1e-6)


def test_tf_kd_runs_without_a_teacher(tmp_path):
    rows = run(tmp_path, {"name": "tf_kd", "correct_prob": 0.8}, teacher=None)
    assert list(rows) == ["student_tfkd_kd"] and rows["student_tfkd_kd"]["teacher_outputs"]["kind"] == "virtual"


# --- 5. teacher-assistant chain -------------------------------------------------------------------------


def test_takd_chain_teacher_assistant_student(tmp_path):
    assistant = {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN}
    rows = run(tmp_path, {"name": "takd", "assistants": [assistant]})
    assert list(rows) == ["teacher", "assistant_1", "student_takd_kd"]
    assert rows["teacher"]["params"] > rows["assistant_1"]["params"] > rows["student_takd_kd"]["params"]
    assert rows["assistant_1"]["role"] == "assistant"


# --- 3. online mutual learning --------------------------------------------------------------------------


def test_mutual_learning_updates_every_student_from_its_peers():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(16, 3)) for _ in range(3)]
    before = [copy.deepcopy(m.state_dict()) for m in members]
    cohort = Cohort(members)
    objective = mutual_objective(3)
    x = torch.randn(64, 1, 4, 4)
    y = torch.randint(0, 3, (64,))
    result = fit(cohort, Split(x, y), Split(x[:16], y[:16]), objective, TrainSettings(epochs=1, batch_size=32), seed=0, teacher=PeerOutputs(cohort))
    for m, b in zip(members, before):
        assert not torch.equal(m[1].weight, b["1.weight"])
    # every member has its CE and a KL from each peer
    assert set(result.history[0].terms) == {f"ce@members.{i}" for i in range(3)} | {f"kd@members.{i}>members.{j}" for i in range(3) for j in range(3) if i != j}


def test_mutual_cohort_with_a_teacher_that_keeps_training(tmp_path):
    rows = run(tmp_path, {"name": "mutual", "students": 2, "teacher_trains": True})
    assert list(rows) == ["teacher", "teacher_online", "student_dml1", "student_dml2"]
    assert rows["teacher"]["sha256"] != rows["teacher_online"]["sha256"]  # the teacher kept training
    assert rows["student_dml1"]["sha256"] != rows["student_dml2"]["sha256"]


# --- 7. frozen-backbone transfer ------------------------------------------------------------------------


def test_frozen_backbone_is_bit_identical_batch_norm_included():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model = FrozenBackbone(net, "4")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(64, 1, 4, 4) * 3 + 1
    y = (x.flatten(1).sum(1) > 16).long()
    fit(model, Split(x, y), Split(x[:16], y[:16]), task_objective(), TrainSettings(epochs=2, batch_size=16), seed=0)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("4."))  # weights and BN statistics
    assert not torch.equal(before["4.weight"], after["4.weight"])


def test_frozen_backbone_end_to_end_with_a_new_label_set(tmp_path):
    strategy = {"name": "frozen_backbone", "label_map": [0, 1] * 5, "train": TRAIN, "finetune": {**TRAIN, "lr": 0.01}}
    rows = run(tmp_path, strategy)
    assert list(rows) == ["teacher", "transfer_frozen", "transfer_finetuned"]
    teacher = load_file(tmp_path / "out" / "teacher.safetensors")
    frozen = load_file(tmp_path / "out" / "transfer_frozen.safetensors")
    tuned = load_file(tmp_path / "out" / "transfer_finetuned.safetensors")
    assert frozen["net.fc.weight"].shape == (2, 32)  # the new head: two classes (parity)
    for key, value in teacher.items():
        if not key.startswith("fc."):
            assert torch.equal(frozen[f"net.{key}"], value)
    assert not torch.equal(tuned["net.layer1.linear.weight"], teacher["layer1.linear.weight"])
    bad = cli(tmp_path / "bad", {"name": "frozen_backbone", "label_map": [0, 1, 0]})
    assert bad.exit_code == 2 and "label_map has 3 entries" in bad.output


# --- 2. generalist + specialists ------------------------------------------------------------------------


def test_specialist_subsets_come_from_the_confusion_matrix():
    confusion = torch.eye(6, dtype=torch.long) * 50
    confusion[3, 5] = confusion[5, 3] = 9
    confusion[0, 1] = 4
    confusion[1, 0] = 1
    assert confusable_subsets(confusion, count=2, size=2) == [[3, 5], [0, 1]]


def test_specialist_combination_keeps_the_generalist_where_no_specialist_is_active():
    torch.manual_seed(0)
    generalist, specialist = nn.Linear(3, 4), nn.Linear(3, 3)
    x = torch.randn(16, 3)
    combined = SpecialistEnsemble(generalist, [specialist], [[0, 1]])(x)
    assert torch.allclose(combined.exp().sum(1), torch.ones(16), atol=1e-5)
    inactive = ~torch.isin(generalist(x).argmax(1), torch.tensor([0, 1]))
    assert inactive.any()
    assert torch.allclose(combined[inactive].exp(), F.softmax(generalist(x[inactive]), dim=1), atol=1e-3)


def test_specialists_end_to_end_and_unknown_classes_exit_2(tmp_path):
    rows = run(tmp_path, {"name": "specialists", "subsets": [["3", 5]]})
    assert list(rows) == ["teacher", "specialist_1", "teacher_specialists", "student_specialists_kd"]
    assert load_file(tmp_path / "out" / "specialist_1.safetensors")["fc.weight"].shape[0] == 3  # 2 classes + dustbin
    bad = cli(tmp_path / "bad", {"name": "specialists", "subsets": [[3, 12]]})
    assert bad.exit_code == 2 and "names class 12, which does not exist" in bad.output
