"""The Python API on any nn.Module: train a teacher, distil a student with composed terms."""

import pytest
import torch
from torch import nn

from distil import build_model, distill, evaluate, load_dataset, losses, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_size=0.15)


def plain_mlp(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def test_train_then_distill_with_composed_terms(digits):
    teacher = plain_mlp(128)  # a user's own module, not from the registry
    result = train(teacher, digits, epochs=5, batch_size=64, lr=0.1)
    assert result.best_val_accuracy > 0.9
    student = build_model("mlp", input_shape=digits.input_shape, num_classes=10, hidden=[16])
    records = []
    distill(teacher, student, digits, terms=[losses.KD(T=2) * 0.5, losses.CE() * 0.5], epochs=3, batch_size=64, lr=0.1, on_epoch=records.append)
    assert [set(r.terms) for r in records] == [{"kd", "ce"}] * 3
    assert evaluate(student, digits.test) > 0.8
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())


def test_unknown_training_option_is_named(digits):
    with pytest.raises(TypeError, match="epoch"):
        train(plain_mlp(8), digits, epoch=3)
