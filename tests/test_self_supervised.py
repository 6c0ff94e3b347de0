"""Self-supervised distillation: EMA teachers, teachers on another view, strong views, probes, the strategy."""

import json
import math
from pathlib import Path

import pytest
import torch
from strategy_helpers import changed, run_cli
from torch import nn

from distil.config import validate_config
from distil.data.views import Chain, StrongViews
from distil.engine.ema import EmaModel
from distil.engine.evaluate import accuracy
from distil.engine.probe import embeddings, fit_linear_probe, install_probe, knn_accuracy, probe
from distil.engine.taps import LOGITS
from distil.engine.view_teacher import ViewTeacher
from distil.errors import DataError
from distil.experiment import run_experiment
from distil.report.table import PROBE_COLUMNS, columns, rows

TRAIN = {"epochs": 2, "batch_size": 64, "lr": 0.05}
BASE = {
    "name": "ssl",
    "seed": 0,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [32]}, **TRAIN},
    "student": {"arch": "mlp", "kwargs": {"hidden": [16]}, **TRAIN},
    "distill": {"method": "kd"},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}
VIEWS = {"scale": 0.5, "jitter": 0.3}




# --- EMA ------------------------------------------------------------------------------------------------


def test_ema_follows_the_rule_and_copies_buffers():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EmaModel(student, momentum=0.75)
    before = ema.average[0].weight.clone()
    with torch.no_grad():
        student[0].weight.add_(1.0)
    student.train()(torch.randn(8, 3))  # moves the BatchNorm statistics
    ema.update(student)
    # θ_t ← 0.75 θ_t + 0.25 θ_s, where θ_s = θ_t(before) + 1
    assert torch.allclose(ema.average[0].weight, before + 0.25)
    assert torch.equal(ema.average[1].running_mean, student[1].running_mean)
    assert not any(p.requires_grad for p in ema.parameters()) and not ema.average.training
    copy_now = EmaModel(student, momentum=0.0)
    with torch.no_grad():
        student[0].weight.mul_(3.0)
    copy_now.update(student)
    assert torch.equal(copy_now.average[0].weight, student[0].weight)
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\), got 1.0"):
        EmaModel(student, 1.0)


# --- teacher outputs on another view -----------------------------------------------------------------


def test_view_teacher_runs_the_teacher_on_its_own_view_of_the_stored_inputs():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    inputs = torch.randn(10, 1, 4, 4)
    index = torch.tensor([3, 7])
    plain = ViewTeacher(teacher, inputs, None, seed=0)
    assert torch.allclose(plain(index, torch.zeros(2, 1, 4, 4))[LOGITS], teacher(inputs[index]))  # not the student's x
    noisy = StrongViews(noise=1.0)
    a, b = ViewTeacher(teacher, inputs, noisy, seed=5), ViewTeacher(teacher, inputs, noisy, seed=5)
    first = a(index, inputs[index])[LOGITS]
    assert torch.equal(first, b(index, inputs[index])[LOGITS])  # its own seeded stream
    assert not torch.allclose(first, a(index, inputs[index])[LOGITS])  # a fresh view every call
    assert not first.requires_grad


def test_view_teacher_updates_an_ema_of_the_student_before_each_forward():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    source = ViewTeacher(EmaModel(student, 0.5), torch.randn(6, 1, 2, 2), None, seed=0, follow=student)
    w0 = source.model[1].weight.clone()
    with torch.no_grad():
        student[1].weight.add_(2.0)
    source(torch.tensor([0, 1]), torch.zeros(2, 1, 2, 2))
    assert torch.allclose(source.model[1].weight, w0 + 1.0) and source.teacher.updates == 1
    with pytest.raises(TypeError, match="EmaModel"):
        ViewTeacher(student, torch.randn(2, 4), None, seed=0, follow=student)


# --- strong views ------------------------------------------------------------------------------------------


def test_strong_views_are_seeded_shaped_and_do_what_they_say():
    x = torch.randn(6, 1, 12, 12)
    views = StrongViews(scale=0.3, hflip=True, jitter=0.4, erase=1.0, noise=0.1)
    first = views(x, torch.Generator().manual_seed(1))
    assert first.shape == x.shape and torch.equal(first, views(x, torch.Generator().manual_seed(1)))
    assert views(torch.randn(3, 2, 40), torch.Generator().manual_seed(0)).shape == (3, 2, 40)
    off = StrongViews()
    assert not off.enabled and off(x, torch.Generator()) is x
    # scale 1 and a certain flip: the resampling grid hits the pixel centres, so a flip is exact
    flipped = StrongViews(hflip=True)(x, torch.Generator().manual_seed(0))
    each = [torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5) or torch.allclose(flipped[i], x[i], atol=1e-5) for i in range(6)]
    assert all(each)
    erased = StrongViews(erase=1.0)(torch.ones(4, 1, 10, 10), torch.Generator().manual_seed(0))
    holes = (erased == 0).flatten(1).sum(1)
    assert ((holes >= 4) & (holes <= 25)).all()  # sides of 2..5 pixels: 20-50 % of 10
    assert torch.equal(Chain((off, StrongViews(noise=0.0))).__call__(x, torch.Generator()), x)
    for bad, message in [({"scale": 0.0}, "views.scale"), ({"jitter": 1.0}, "views.jitter"), ({"erase": 2.0}, "views.erase"), ({"noise": -1.0}, "views.noise")]:
        with pytest.raises(DataError, match=message):
            StrongViews(**bad)


# --- probes ---------------------------------------------------------------------------------------------


def test_knn_accuracy_on_a_hand_example():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_y = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.2], [0.2, 1.0], [0.6, 0.5]])
    # k = 1: the nearest by cosine — row 0 → class 0, row 1 → class 1, row 2 (angle 39.8°) is nearest [0.9, 0.1] → 0
    assert knn_accuracy(train, train_y, test, torch.tensor([0, 1, 1]), 2, k=1) == pytest.approx(2 / 3)
    # k = 4 weighs every training row by exp(cos/T); with T large the vote is a near-tie that the sum of cosines decides
    cos = torch.nn.functional.normalize(test[2:], dim=1) @ torch.nn.functional.normalize(train, dim=1).t()
    winner = int(cos[0, 2:].sum() > cos[0, :2].sum())
    assert knn_accuracy(train, train_y, test[2:], torch.tensor([winner]), 2, k=4, T=100.0) == 1.0


def test_linear_probe_separates_separable_features_and_folds_into_a_head():
    torch.manual_seed(0)
    y = torch.arange(200) % 3
    features = torch.randn(200, 5) * 0.3 + 4.0 * nn.functional.one_hot(y, 5).float()
    fitted = fit_linear_probe(features, y, 3)
    assert fitted.accuracy(features, y) == 1.0
    weight, bias = fitted.folded()
    assert torch.allclose(features @ weight.t() + bias, fitted.logits(features), atol=1e-4)


def test_installed_probe_makes_the_model_classify_as_the_probe():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(120, 1, 4, 4), torch.randint(0, 3, (120,))
    scores, fitted = probe(model, x, y, x, y, 3)
    install_probe(model, fitted)
    assert accuracy(model, x, y) == pytest.approx(scores["probe_accuracy"], abs=1 / 120)
    assert embeddings(model, x).shape == (120, 8)
    assert 0 <= scores["knn_accuracy"] <= 1


# --- the strategy -------------------------------------------------------------------------------------------


def test_self_supervised_from_a_given_teacher_and_from_the_students_ema(tmp_path):
    given = run_experiment(validate_config(changed(BASE, {"name": "self_supervised", "views": VIEWS})), tmp_path / "given")
    rows_by_name = {m["name"]: m for m in given["models"]}
    ssl = rows_by_name["student_ssl_given"]
    assert ssl["method"] == "self_supervised[given]→kd"
    assert ssl["accuracy"] == pytest.approx(ssl["probe_accuracy"], abs=0.01)  # the probe is its classifier
    assert ssl["teacher_outputs"]["kind"] == "online, another view" and ssl["unlabeled_inputs"] == 1222
    assert [m["probe_accuracy"] for m in given["models"]] and all(0.5 < m["knn_accuracy"] <= 1 for m in given["models"])
    assert ssl["best_epoch"] == ssl["epochs"] == 2  # no labels to pick an epoch by: the last one
    names = columns(given)
    assert names[names.index("test acc") + 1 : names.index("test acc") + 3] == PROBE_COLUMNS
    assert all("%" in r[names.index("probe acc")] for r in rows(given))

    ema = run_experiment(validate_config(changed(BASE, {"name": "self_supervised", "teacher": "ema", "momentum": 0.9, "views": VIEWS}, teacher=None, distill={"method": "kd"})), tmp_path / "ema")
    row = {m["name"]: m for m in ema["models"]}["student_ssl_ema"]
    assert row["teacher_outputs"]["ema_momentum"] == 0.9 and 0 <= row["probe_accuracy"] <= 1
    assert row["teacher_outputs"]["ema_updates"] == 2 * 20  # updated once per step: 2 epochs × ceil(1,222 / 64) batches


# DINO's centre and EMA head and SEED's queue (random unit rows at first, real teacher embeddings as it
# fills) move the target, so their terms need not fall; BYOL's and Barlow Twins' targets are fixed.
@pytest.mark.parametrize(("method", "teacher", "falls"), [("dino", "ema", False), ("seed", "given", False), ("barlow_twins", "given", True), ("byol", "ema", True)])
def test_the_label_free_presets_train_through_the_strategy(tmp_path, method, teacher, falls):
    """Each preset's heads, queues and centres in the real loop: the term stays finite (and falls where its
    target is fixed), the heads are saved beside the student (never in it), and the probe makes a
    classifier well above chance (0.1)."""
    from safetensors.torch import load_file

    strategy = {"name": "self_supervised", "teacher": teacher, "views": VIEWS, "probe_baselines": False}
    raw = changed(BASE, strategy, distill={"method": method}, student={**BASE["student"], "epochs": 3}, scratch=False)
    summary = run_experiment(validate_config(raw), tmp_path / "out")
    row = {m["name"]: m for m in summary["models"]}[f"student_ssl_{teacher}"]
    assert row["probe_accuracy"] > 0.5 and row["method"] == f"self_supervised[{teacher}]→{method}"
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    terms = [r["terms"] for r in records if r["model"] == f"student_ssl_{teacher}"]
    (name,) = terms[0]
    assert all(math.isfinite(t[name]) for t in terms)
    assert terms[-1][name] < terms[0][name] or not falls
    heads = load_file(str(tmp_path / "out" / f"student_ssl_{teacher}.objective.safetensors"))
    assert heads and all(k.startswith(("losses.", "connectors.")) for k in heads)
    assert not any(k.startswith(("losses.", "connectors.")) for k in load_file(str(tmp_path / "out" / f"student_ssl_{teacher}.safetensors")))


def test_self_supervised_bad_input_exits_2_before_writing(tmp_path):
    no_views = run_cli(tmp_path / "a", changed(BASE, {"name": "self_supervised"}))
    assert no_views.exit_code == 2 and "strategy.views" in no_views.output and "two augmented views" in no_views.output
    assert not (tmp_path / "a" / "out").exists()
    no_teacher = run_cli(tmp_path / "b", changed(BASE, {"name": "self_supervised", "views": VIEWS}, teacher=None))
    assert no_teacher.exit_code == 2 and "strategy.teacher" in no_teacher.output
    bad_momentum = run_cli(tmp_path / "c", changed(BASE, {"name": "self_supervised", "teacher": "ema", "momentum": 1.0, "views": VIEWS}))
    assert bad_momentum.exit_code == 2 and "momentum" in bad_momentum.output


def test_a_loss_argument_out_of_range_exits_2_naming_the_term(tmp_path):
    raw = changed(BASE, {"name": "none"}, distill={"method": "kd", "terms": [{"loss": "ECL", "student": "embedding", "params": {"threshold": 1.5}}]})
    result = run_cli(tmp_path, raw)
    assert result.exit_code == 2 and "ECL" in result.output and "threshold must be in [0, 1], got 1.5" in result.output
    assert not (tmp_path / "out").exists()


def test_an_ema_teacher_and_its_views_resume_bit_for_bit(tmp_path):
    """A fit stopped after epoch 1 and resumed from its checkpoint ends with the weights, EMA and view stream of
    an uninterrupted fit: the EMA teacher's state is part of the checkpoint."""
    from distil.data import Split
    from distil.engine.objective import build_objective
    from distil.engine.trainer import TrainSettings, fit_epochs
    from distil.losses import BYOL
    from distil.session.checkpoints import RunCheckpoints
    from distil.session.run_dir import RunDir

    x = torch.randn(96, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    views = StrongViews(scale=0.5, noise=0.2)
    settings = TrainSettings(epochs=3, batch_size=32, lr=0.05)

    def run(folder: Path, stop_after: int | None = None):
        torch.manual_seed(0)
        student = nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, 3))
        objective = build_objective([BYOL(s_dim=12, t_dim=12, hidden=None).between("2")], student, student, x[:8], n_data=96, seed=0)
        source = ViewTeacher(EmaModel(student, 0.9), x, views, objective.teacher_taps, seed=1, follow=student)
        checkpoint = RunCheckpoints(RunDir(folder)).fit("ssl")
        epochs = fit_epochs(student, Split(x), Split(x[:0]), objective, settings, seed=0, teacher=source, augment=views, checkpoint=checkpoint)
        for done, _ in enumerate(epochs, start=1):
            if done == stop_after:
                break  # "killed" after this epoch's checkpoint
        return student, source

    whole, whole_source = run(tmp_path / "whole")
    run(tmp_path / "resumed", stop_after=1)
    resumed, resumed_source = run(tmp_path / "resumed")
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(whole_source.model.state_dict().values(), resumed_source.model.state_dict().values()))
    assert whole_source.info["ema_updates"] == resumed_source.info["ema_updates"] == 3 * 3  # 3 epochs × 3 batches
    assert torch.equal(whole_source.generator.get_state(), resumed_source.generator.get_state())


def test_a_label_free_preset_outside_self_supervised_is_refused(tmp_path):
    """simclr alone trains the embedding, never the classifier: only self_supervised, which probes it, may use it."""
    result = run_cli(tmp_path, changed(BASE, {"name": "none"}, distill={"method": "simclr"}))
    assert result.exit_code == 2 and "no term reads the student's logits" in result.output and "strategy self_supervised" in result.output
    assert not (tmp_path / "out").exists()
