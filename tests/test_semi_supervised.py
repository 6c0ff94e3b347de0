"""Semi-supervised distillation: few labels as data (keep_labels), CE on partly labelled batches, the
FixMatch strategy end to end on digits, and its bad input (exit 2 before any work)."""

import json
import math

import pytest
import torch
from strategy_helpers import changed, run_cli, runner

from distil.cli import app
from distil.config import DataConfig, validate_config
from distil.data import Split, load_dataset
from distil.data.labels import keep_labels, labelled_mask
from distil.data.tokens import IGNORE
from distil.errors import ConfigError, DataError
from distil.experiment import run_experiment
from distil.losses import CE
from distil.strategies.semi_supervised import mixed_split

TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.05}
BASE = {
    "name": "semi",
    "seed": 0,
    "data": {"name": "digits", "val_size": 0.15, "labels_per_class": 5, "augment": {"crop_padding": 1}},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [32]}, **TRAIN},
    "student": {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}
STRONG = {"scale": 0.5, "jitter": 0.3, "erase": 0.5}




def labelled_split(counts: list[int], seed: int = 0) -> Split:
    """x = the sample's own index (so samples can be followed), y = the class, shuffled."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    return Split(torch.arange(len(y), dtype=torch.float32).unsqueeze(1), y)


# --- few labels, as data ---------------------------------------------------------------------------------


def test_keep_labels_keeps_exactly_k_per_class_disjoint_covering_and_seeded():
    train = labelled_split([30, 12, 7, 20])
    labelled, unlabeled = keep_labels(train, 4, per_class=5, seed=3)
    assert torch.bincount(labelled.y, minlength=4).tolist() == [5, 5, 5, 5]
    assert unlabeled.y is None and len(labelled) + len(unlabeled) == len(train)
    ids = torch.cat([labelled.x, unlabeled.x]).squeeze(1).long()
    assert sorted(ids.tolist()) == list(range(len(train)))  # disjoint and covering
    assert torch.equal(labelled.y, train.y[labelled.x.squeeze(1).long()])  # each keeps its own label
    assert labelled.x.squeeze(1).diff().gt(0).all()  # in the split's order: a choice, not an order
    again, _ = keep_labels(train, 4, per_class=5, seed=3)
    other, _ = keep_labels(train, 4, per_class=5, seed=4)
    assert torch.equal(again.x, labelled.x) and not torch.equal(other.x, labelled.x)


def test_keep_labels_works_on_token_ids_like_on_images():
    ids = torch.randint(1, 50, (40, 7))
    labelled, unlabeled = keep_labels(Split(ids, torch.arange(40) % 4), 4, per_class=2, seed=0)
    assert labelled.x.dtype == unlabeled.x.dtype == torch.int64 and len(labelled) == 8 and unlabeled.x.shape == (32, 7)


def test_labelled_fraction_rounds_half_up_with_at_least_one_per_class():
    train = labelled_split([10, 5, 3, 1, 0])
    # 0.3 × (10, 5, 3, 1, 0) = 3, 1.5 → 2, 0.9 → 1, 0.3 → at least 1, an absent class none
    mask = labelled_mask(train.y, 5, fraction=0.3, seed=0)
    assert torch.bincount(train.y[mask], minlength=5).tolist() == [3, 2, 1, 1, 0]
    everything, nothing = keep_labels(train, 5, fraction=1.0, seed=0)
    assert len(everything) == len(train) and len(nothing) == 0


def test_too_many_labels_and_tagging_data_are_refused_naming_the_option():
    train = labelled_split([9, 4])
    with pytest.raises(DataError, match=r"labels_per_class: 5 is more than class 'b' has in the training split \(4 after the validation split\)"):
        keep_labels(train, 2, per_class=5, seed=0, class_names=("a", "b"))
    tags = Split(torch.ones(3, 6, dtype=torch.int64), torch.full((3, 6), IGNORE))
    with pytest.raises(DataError, match="labelled_fraction: the training data have a tag per token"):
        keep_labels(tags, 2, fraction=0.5, seed=0)


def test_data_section_keeps_few_labels_of_the_training_split_only():
    full = load_dataset("digits", val_size=0.15, seed=0)
    data = DataConfig(name="digits", val_size=0.15, labels_per_class=5).load(seed=0)
    assert len(data.train) == 50 and len(data.unlabeled) == len(full.train) - 50 and data.unlabeled.y is None
    assert torch.equal(data.val.y, full.val.y) and torch.equal(data.test.y, full.test.y)  # val and test keep theirs
    sizes = data.describe()["sizes"]
    assert sizes == {"train": 50, "val": len(full.val), "test": len(full.test), "unlabeled": len(full.train) - 50}
    assert data.describe()["label_subset"] == {"labels_per_class": 5, "seed": 0, "stratified": True}
    assert data.mean == full.mean  # normalized with all training inputs, labelled or not
    assert torch.equal(DataConfig(name="digits", val_size=0.15, labels_per_class=5).load(seed=0).train.x, data.train.x)
    fraction = DataConfig(name="digits", val_size=0.15, labelled_fraction=0.1).load(seed=0)
    assert abs(len(fraction.train) - 0.1 * len(full.train)) <= 10 and "labelled_fraction" in fraction.describe()["label_subset"]
    assert load_dataset("digits").unlabeled is None and "unlabeled" not in full.describe()["sizes"]


def test_few_labels_config_errors():
    with pytest.raises(ConfigError, match=r"data.labels_per_class: 500 is more than class '\w+' has in the training split \(\d+ after the validation split\)"):
        DataConfig(name="digits", labels_per_class=500).load(seed=0)
    with pytest.raises(ConfigError, match="labels_per_class .* and labelled_fraction .* set one of them"):
        validate_config(changed(BASE, None, data={"name": "digits", "labels_per_class": 5, "labelled_fraction": 0.1}))
    with pytest.raises(ConfigError, match="data.labelled_fraction"):
        validate_config(changed(BASE, None, data={"name": "digits", "labelled_fraction": 1.5}))
    with pytest.raises(ConfigError, match="strategy.threshold"):
        validate_config(changed(BASE, {"name": "semi_supervised", "threshold": 1.5}))


# --- CE on partly labelled batches ------------------------------------------------------------------------


def test_ce_leaves_unlabelled_rows_out_and_is_zero_without_labels():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    target = torch.tensor([1, IGNORE, 3, IGNORE, IGNORE, 0])
    loss = CE()(logits, target=target)
    labelled = target != IGNORE
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[labelled], target[labelled]))
    loss.backward()
    assert logits.grad[~labelled].abs().sum() == 0 and logits.grad[labelled].abs().sum() > 0
    none = torch.randn(3, 4, requires_grad=True)
    empty = CE(label_smoothing=0.1)(none, target=torch.full((3,), IGNORE))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(none.grad, torch.zeros(3, 4))


def test_the_training_split_repeats_the_labelled_samples_to_about_one_in_mu():
    labelled = Split(torch.zeros(10, 2), torch.arange(10) % 3)
    pool = Split(torch.ones(200, 2))
    rows, repeats = mixed_split(labelled, pool, ratio=7)
    assert repeats == 3  # round(200 / 70)
    assert len(rows) == 230 and (rows.y == IGNORE).sum() == 200 and torch.equal(rows.y[:30], labelled.y.repeat(3))
    assert mixed_split(labelled, Split(torch.ones(5, 2)), ratio=7)[1] == 1  # a small pool: the labels once


# --- the strategy -----------------------------------------------------------------------------------------


def test_fixmatch_with_an_ema_labeller_and_with_the_teacher(tmp_path):
    strategy = {"name": "semi_supervised", "labeller": "ema", "momentum": 0.9, "threshold": 0.5, "strong": STRONG, "unlabeled_ratio": 7}
    summary = run_experiment(validate_config(changed(BASE, strategy)), tmp_path / "ema")
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "student_scratch", "student_fixmatch", "student_labels"]
    row = rows["student_fixmatch"]
    full = load_dataset("digits", val_size=0.15, seed=0)
    assert row["method"] == "semi_supervised[ema]→fixmatch" and row["role"] == "student"
    assert row["labelled"] == 50 and row["unlabeled"] == len(full.train) - 50 == summary["data"]["sizes"]["unlabeled"]
    assert row["labelled_repeats"] == round((len(full.train) - 50) / 350) and row["labeller"] == "ema" and row["threshold"] == 0.5
    assert 0.0 <= row["mask_rate"] <= 1.0 and sum(row["confident_per_class"]) == round(row["mask_rate"] * row["unlabeled"])
    assert 0.0 <= row["labeller_val_accuracy"] <= 1.0 and 0.0 < row["accuracy"] <= 1.0
    assert row["teacher_outputs"]["kind"] == "online, another view" and row["teacher_outputs"]["ema_momentum"] == 0.9
    assert [v["kind"] for v in row["views"]["strong"]] == ["BatchAugment", "StrongViews"]
    epochs = [json.loads(line) for line in (tmp_path / "ema" / "metrics.jsonl").read_text().splitlines()]
    terms = [e["terms"] for e in epochs if e["model"] == "student_fixmatch"]
    assert len(terms) == 2 and set(terms[0]) == {"ce", "fixmatch"} and all(math.isfinite(v) for t in terms for v in t.values())
    assert rows["teacher"]["method"] == "trained" and summary["data"]["sizes"]["train"] == 50  # teacher and scratch: the labelled part
    # the labels-only baseline of the loop: every label as often as the FixMatch student, no unlabeled row
    baseline = [e for e in epochs if e["model"] == "student_labels"]
    assert rows["student_labels"]["labelled_repeats"] == row["labelled_repeats"] and len(baseline) == 2 and set(baseline[0]["terms"]) == {"ce"}

    given = run_experiment(validate_config(changed(BASE, {**strategy, "labeller": "teacher", "labels_baseline": False})), tmp_path / "teacher")
    assert "student_labels" not in {m["name"] for m in given["models"]}
    row = {m["name"]: m for m in given["models"]}["student_fixmatch"]
    assert row["method"] == "semi_supervised[teacher]→fixmatch" and "labeller_val_accuracy" not in row

    graph = run_experiment(validate_config(changed(BASE, {**strategy, "labeller": "self", "comatch": 0.5}, teacher=None)), tmp_path / "self")
    row = {m["name"]: m for m in graph["models"]}["student_fixmatch"]
    assert row["method"] == "semi_supervised[self]→fixmatch+comatch" and "ema_momentum" in row["teacher_outputs"]  # an EMA of momentum 0
    epochs = [json.loads(line) for line in (tmp_path / "self" / "metrics.jsonl").read_text().splitlines()]
    assert any(name.startswith("comatchgraph@") for name in next(e["terms"] for e in epochs if e["model"] == "student_fixmatch"))
    assert (tmp_path / "self" / "student_fixmatch.objective.safetensors").exists()  # CoMatch's projector, beside the weights


def test_soft_targets_learn_the_teachers_distribution_on_the_students_own_view(tmp_path):
    strategy = {"name": "semi_supervised", "labeller": "teacher", "targets": "soft", "T": 4.0, "strong": {}, "labels_baseline": False}
    summary = run_experiment(validate_config(changed(BASE, strategy)), tmp_path / "soft")
    row = {m["name"]: m for m in summary["models"]}["student_soft"]
    assert row["method"] == "semi_supervised[teacher]→kd" and row["targets"] == "soft" and row["T"] == 4.0
    assert "mask_rate" not in row and "threshold" not in row  # no threshold: every row learns the distribution
    # the student's view is the weak view: the teacher labels that very view (not a view of its own)
    assert row["teacher_outputs"]["kind"] == "views" and [v["kind"] for v in row["views"]["strong"]] == ["BatchAugment"]  # pre-drawn, replayed
    epochs = [json.loads(line) for line in (tmp_path / "soft" / "metrics.jsonl").read_text().splitlines()]
    terms = [e["terms"] for e in epochs if e["model"] == "student_soft"]
    assert len(terms) == 2 and set(terms[0]) == {"ce", "kd"} and all(math.isfinite(v) and v > 0 for t in terms for v in t.values())
    # with strong views the teacher keeps labelling a weak view of its own, as in FixMatch
    strong = run_experiment(validate_config(changed(BASE, {**strategy, "strong": STRONG})), tmp_path / "strong")
    assert {m["name"]: m for m in strong["models"]}["student_soft"]["teacher_outputs"]["kind"] == "online, another view"


def test_bad_semi_supervised_input_exits_2_before_writing(tmp_path):
    too_many = run_cli(tmp_path / "a", changed(BASE, {"name": "semi_supervised"}, data={"name": "digits", "labels_per_class": 500}))
    assert too_many.exit_code == 2 and "data.labels_per_class: 500 is more than class" in too_many.output
    assert not (tmp_path / "a" / "out").exists()
    no_pool = run_cli(tmp_path / "b", changed(BASE, {"name": "semi_supervised"}, data={"name": "digits"}))
    assert no_pool.exit_code == 2 and "data.labels_per_class or data.labelled_fraction" in no_pool.output and "strategy.transfer" in no_pool.output
    no_teacher = run_cli(tmp_path / "c", changed(BASE, {"name": "semi_supervised", "labeller": "teacher"}, teacher=None))
    assert no_teacher.exit_code == 2 and "strategy.labeller" in no_teacher.output
    threshold = run_cli(tmp_path / "d", changed(BASE, {"name": "semi_supervised", "threshold": 1.5}))
    assert threshold.exit_code == 2 and "strategy.threshold" in threshold.output
    soft = run_cli(tmp_path / "e", changed(BASE, {"name": "semi_supervised", "targets": "soft", "threshold": 0.9}))
    assert soft.exit_code == 2 and "strategy: Value error, threshold (0.9)" in soft.output and "targets: soft" in soft.output
    assert not any((tmp_path / d / "out").exists() for d in "bcde")


def test_bracketed_methods_and_descriptions_print_as_text():
    from rich.console import Console

    from distil.report.table import summary_table

    row = {"name": "student_fixmatch", "method": "semi_supervised[ema]→fixmatch", "arch": "mlp", "accuracy": 0.5, "params": 10, "size_bytes": 100, "latency_ms_b1": 0.1, "throughput_b256": 1.0}
    console = Console(width=300, record=True)
    console.print(summary_table({"name": "n", "dataset": "digits", "models": [row]}))
    assert "semi_supervised[ema]→fixmatch" in console.export_text()  # not read as rich markup
    listed = runner.invoke(app, ["strategies"], env={"COLUMNS": "400"})
    assert "[benchmarks/strategies/README.md: MNIST-1D]" in listed.output
