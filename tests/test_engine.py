"""The training loop: frozen teacher, exact cache, schedules, best-on-validation weights."""

import copy

import pytest
import torch
from torch import nn

from distil.data import Split
from distil.engine.objective import Objective, task_objective
from distil.engine.teacher_outputs import teacher_outputs
from distil.engine.teacher_sources import CachedTeacher, OnlineTeacher
from distil.engine.trainer import SCHEDULES, TrainSettings, fit
from distil.losses import CE, KD


def hinton_objective(T, alpha):
    return Objective([KD(T=T) * alpha, CE() * (1 - alpha)])


def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    return Split(x, y)


def mlp(seed=0, hidden=16):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def test_cache_equals_online_teacher_outputs():
    data = toy_data()
    teacher = mlp(1)
    index = torch.tensor([5, 0, 77])
    cached = CachedTeacher(teacher, data.x, batch_size=100)
    online = OnlineTeacher(teacher)
    assert torch.allclose(cached(index, data.x[index])["logits"], online(index, data.x[index])["logits"])
    assert cached.nbytes == 256 * 2 * 4
    assert isinstance(teacher_outputs(teacher, data.x, False), CachedTeacher)
    assert isinstance(teacher_outputs(teacher, data.x, True), OnlineTeacher)


def test_teacher_stays_frozen_and_in_eval_mode_while_student_learns():
    data = toy_data()
    teacher = mlp(1, hidden=32)
    teacher.append(nn.Dropout(0.5))  # eval mode matters: dropout would make the targets random
    before = copy.deepcopy(teacher.state_dict())
    student = mlp(2)
    student_before = copy.deepcopy(student.state_dict())
    fit(student, data, toy_data(64, 1), hinton_objective(4.0, 0.9), TrainSettings(epochs=2, batch_size=32), seed=0, teacher=OnlineTeacher(teacher))
    assert not teacher.training
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())


def test_kd_without_teacher_outputs_is_refused():
    with pytest.raises(ValueError, match="no teacher outputs"):
        fit(mlp(), toy_data(), toy_data(), hinton_objective(4.0, 0.5), TrainSettings(epochs=1), seed=0)


def test_model_ends_with_best_validation_weights():
    data, val = toy_data(), toy_data(128, 5)
    student = mlp(3)
    result = fit(student, data, val, task_objective(), TrainSettings(epochs=6, batch_size=16, lr=0.05), seed=0)
    from distil.engine.evaluate import accuracy

    assert accuracy(student, val.x, val.y) == pytest.approx(result.best_val_accuracy)
    assert result.best_val_accuracy == max(r.val_accuracy for r in result.history)
    assert len(result.history) == 6 and result.best_val_accuracy > 0.85


def test_schedules():
    s = TrainSettings(milestones=(0.5, 0.75), gamma=0.1)
    assert SCHEDULES["cosine"](0.0, s) == 1.0 and SCHEDULES["cosine"](0.5, s) == pytest.approx(0.5)
    assert [SCHEDULES["step"](t, s) for t in (0.0, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    assert SCHEDULES["constant"](0.9, s) == 1.0


def test_per_term_values_are_weighted_parts_of_the_loss():
    result = fit(mlp(4), toy_data(), toy_data(64, 1), hinton_objective(2.0, 0.75), TrainSettings(epochs=1), seed=0, teacher=CachedTeacher(mlp(1), toy_data().x))
    r = result.history[0]
    assert set(r.terms) == {"kd", "ce"}
    assert r.loss == pytest.approx(r.terms["kd"] + r.terms["ce"], rel=1e-5)
