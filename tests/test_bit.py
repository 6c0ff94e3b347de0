"""BiT: the GroupNorm + Weight-Standardized ResNet-v2, the BiT-HyperRule, MixUp, and the `bit` strategy end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from strategy_helpers import changed, run_cli
from torch import nn

from distil.data import load_dataset
from distil.engine.trainer import lr_factor
from distil.errors import DataError
from distil.models import build_model
from distil.models.resnet_v2 import StdConv2d
from distil.strategies.bit import MixUp, MixUpCE, bit_hyperrule, rule_config
from distil.weights import save_weights

SMALL = {"depth": 8, "widths": [4, 4, 8, 8]}


# --- the model -------------------------------------------------------------------------------------------


def test_weight_standardization_standardizes_each_output_channel():
    torch.manual_seed(0)
    conv = StdConv2d(3, 5, kernel_size=3, bias=False)
    with torch.no_grad():
        conv.weight.mul_(torch.arange(1.0, 6.0).view(5, 1, 1, 1)).add_(torch.arange(5.0).view(5, 1, 1, 1))  # scale 1..5, shift 0..4
    w = conv.standardized_weight()
    var, mean = torch.var_mean(w, dim=(1, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(var, torch.ones(5), atol=1e-5, rtol=0)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, w))  # the forward uses the standardized weight
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(3.0)  # an affine change of the raw weight changes nothing
    torch.testing.assert_close(conv(x), F.conv2d(x, w), atol=1e-5, rtol=1e-5)


def test_resnet_v2_uses_group_norm_not_batch_norm_and_standardized_convs():
    model = build_model("resnet_v2", input_shape=(1, 28, 28), num_classes=10, widths=[16, 16, 64, 128])
    modules = dict(model.named_modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules.values())
    assert all(isinstance(m, StdConv2d) for m in modules.values() if isinstance(m, nn.Conv2d))
    groups = {name: m.num_groups for name, m in modules.items() if isinstance(m, nn.GroupNorm)}
    # 32 groups where each keeps >= 4 channels: 16 -> 4, 64 -> 16, 128 -> 32
    assert groups["layer1.0.gn1"] == 4 and groups["layer2.0.gn2"] == 16 and groups["norm"] == 32
    assert {"conv1", "layer1", "layer2", "layer3", "norm", "fc"} <= set(modules) and "layer4" not in modules
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)  # global pool: any resolution


@pytest.mark.parametrize("train", [False, True])
def test_resnet_v2_has_no_batch_statistics_batch_of_one_equals_its_row(train):
    torch.manual_seed(0)
    model = build_model("resnet_v2", input_shape=(1, 12, 12), num_classes=4, **SMALL).train(train)
    x = torch.randn(6, 1, 12, 12)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(alone, together, atol=1e-5, rtol=1e-5)


def test_digits_upsampled_by_the_size_option():
    small, big = load_dataset("digits", seed=0), load_dataset("digits", seed=0, size=28)
    assert small.input_shape == (1, 8, 8) and big.input_shape == (1, 28, 28) and len(big.test) == len(small.test)
    with pytest.raises(DataError, match="option size must be a positive integer"):
        load_dataset("digits", seed=0, size=0)


# --- the BiT-HyperRule -----------------------------------------------------------------------------------


def bit_get_lr(step: int, dataset_size: int, base_lr: float = 0.003) -> float | None:
    """big_transfer's bit_hyperrule.get_lr, as published (the reference the rule is checked against)."""
    supports = [100, 200, 300, 400, 500] if dataset_size < 20_000 else [500, 3000, 6000, 9000, 10_000] if dataset_size < 500_000 else [500, 6000, 12_000, 18_000, 20_000]
    if step < supports[0]:
        return base_lr * step / supports[0]
    if step >= supports[-1]:
        return None
    for s in supports[1:]:
        if s < step:
            base_lr /= 10
    return base_lr


@pytest.mark.parametrize(
    "size, steps, warmup, decays, mixup",
    [
        (1, 500, 100, (200, 300, 400), 0.0),
        (19_999, 500, 100, (200, 300, 400), 0.0),
        (20_000, 10_000, 500, (3_000, 6_000, 9_000), 0.1),
        (499_999, 10_000, 500, (3_000, 6_000, 9_000), 0.1),
        (500_000, 20_000, 500, (6_000, 12_000, 18_000), 0.1),
    ],
)
def test_hyperrule_golden(size, steps, warmup, decays, mixup):
    rule = bit_hyperrule(size)
    assert (rule.steps, rule.warmup, rule.decays, rule.mixup, rule.resolution) == (steps, warmup, decays, mixup, None)


def test_hyperrule_resolution_and_bad_size():
    assert bit_hyperrule(100, (28, 28)).resolution == (160, 128)
    assert bit_hyperrule(100, (95, 97)).resolution == (160, 128)  # area 9215 < 96²
    assert bit_hyperrule(100, (96, 96)).resolution == (448, 384)
    with pytest.raises(ValueError, match="non-empty"):
        bit_hyperrule(0)


@pytest.mark.parametrize("size", [100, 50_000])
def test_rule_as_train_settings_gives_bits_learning_rate_at_every_step(size):
    rule = bit_hyperrule(size)
    cfg = rule_config(rule, "resnet_v2", {}, size, 512, 0.003)
    per_epoch = math.ceil(size / cfg.batch_size)
    total = cfg.epochs * per_epoch
    assert total == rule.steps if size == 100 else abs(total - rule.steps) < per_epoch
    settings = cfg.settings()
    assert (settings.optimizer, settings.momentum, settings.weight_decay, settings.lr) == ("sgd", 0.9, 0.0, 0.003)
    differ = []
    for step in range(0, rule.steps, 1 if size == 100 else 7):
        ours = 0.003 * lr_factor(step / rule.steps, settings)
        assert ours == pytest.approx(0.003 * rule.lr_factor(step), rel=1e-9, abs=1e-12)
        if ours != pytest.approx(bit_get_lr(step, size), rel=1e-9, abs=1e-12):
            differ.append(step)
    assert differ == ([d for d in rule.decays] if size == 100 else [])  # BiT's decay takes effect one step later


def test_rule_batch_and_learning_rate():
    small = rule_config(bit_hyperrule(100), "resnet_v2", {}, 100, 512, 0.003)
    assert (small.batch_size, small.epochs, small.lr) == (100, 500, 0.003)  # the whole set is the batch: BiT's lr
    half = rule_config(bit_hyperrule(1000), "resnet_v2", {}, 1000, 256, 0.003)
    assert (half.batch_size, half.epochs, half.lr) == (256, 125, 0.0015)  # 4 batches per epoch, lr × 256/512
    assert bit_hyperrule(1000).scaled(50).decays == (20, 30, 40) and bit_hyperrule(1000).scaled(50).warmup == 10


# --- MixUp -----------------------------------------------------------------------------------------------


def test_mixup_mixes_inputs_in_training_only_and_its_loss_mixes_the_two_labels():
    torch.manual_seed(0)
    mix = MixUp(nn.Identity(), alpha=0.4)
    x = torch.randn(5, 3)
    out = mix(x)
    lam, perm = mix.last
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(5))
    torch.testing.assert_close(out, lam * x + (1 - lam) * x[perm])
    assert torch.equal(mix.eval()(x), x)
    logits, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    torch.testing.assert_close(MixUpCE(mix)(logits, target=y), expected)
    assert not list(MixUpCE(mix).parameters())  # the model's parameters are not the loss's
    mix.last = (1.0, perm)
    torch.testing.assert_close(MixUpCE(mix)(logits, target=y), F.cross_entropy(logits, y))


# --- the strategy, end to end ----------------------------------------------------------------------------

BASE = {
    "name": "bit-tiny",
    "seed": 1,
    "data": {"name": "digits", "labels_per_class": 3, "val_size": 0.15},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, "epochs": 2, "batch_size": 64, "lr": 0.1},
    "scratch": True,
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}


def upstream(path: Path, classes: int = 5, **kwargs) -> Path:
    model = build_model("resnet_v2", input_shape=(1, 8, 8), num_classes=classes, seed=0, **{**SMALL, **kwargs})
    return save_weights(model, path)


def test_bit_fine_tunes_a_new_zero_head_then_teaches_the_student(tmp_path):
    weights = upstream(tmp_path / "up.safetensors")
    strategy = {"name": "bit", "kwargs": SMALL, "weights": str(weights), "steps": 10, "base_lr": 0.3, "scratch": {"epochs": 2, "batch_size": 64}}
    result = run_cli(tmp_path / "run", changed(BASE, strategy))
    assert result.exit_code == 0, result.output
    out = tmp_path / "run" / "out"
    import json

    rows = {m["name"]: m for m in json.loads((out / "summary.json").read_text())["models"]}
    assert list(rows) == ["student_scratch", "bit_finetuned", "bit_scratch", "student_kd", "student_kd_unlabeled"]
    tuned, up = load_file(out / "bit_finetuned.safetensors"), load_file(weights)
    assert tuned["fc.weight"].shape == (10, 8) and up["fc.weight"].shape == (5, 8)  # a new head for 10 classes
    assert not torch.equal(tuned["layer1.0.conv1.weight"], up["layer1.0.conv1.weight"])  # everything fine-tuned
    row = rows["bit_finetuned"]
    assert row["method"] == "BiT-HyperRule, 10 steps" and row["role"] == "teacher"
    assert "10 steps (10 epochs × 1 batch of ≤30), lr 0.3, warm-up 2 steps, ×0.1 at 4/6/8" in row["schedule"]  # 3 labels × 10 classes
    assert row["upstream"]["arch"] == "resnet_v2" and row["upstream"]["head"] == "fc"
    assert rows["student_kd_unlabeled"]["teacher_outputs"]["inputs"] > rows["student_kd"]["teacher_outputs"]["inputs"] == 30


def test_bit_with_mixup_trains_on_mixed_batches(tmp_path):
    weights = upstream(tmp_path / "up.safetensors")
    strategy = {"name": "bit", "kwargs": SMALL, "weights": str(weights), "steps": 3, "mixup": 0.2, "unlabeled": False}
    result = run_cli(tmp_path / "run", changed(BASE, strategy, scratch=False))
    assert result.exit_code == 0, result.output
    import json

    rows = {m["name"]: m for m in json.loads((tmp_path / "run" / "out" / "summary.json").read_text())["models"]}
    assert list(rows) == ["bit_finetuned", "student_kd"] and rows["bit_finetuned"]["hyperrule"]["mixup"] == 0.2
    assert "MixUp α=0.2" in rows["bit_finetuned"]["schedule"]
    assert "mixup_ce" in (tmp_path / "run" / "out" / "metrics.jsonl").read_text()


def test_bit_weights_of_another_model_fail_naming_the_file_and_keys(tmp_path):
    wide = upstream(tmp_path / "wide.safetensors", widths=[4, 4, 8, 16])
    result = run_cli(tmp_path / "a", changed(BASE, {"name": "bit", "kwargs": SMALL, "weights": str(wide)}))
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "wide.safetensors does not fit the model" in text and "layer3.0.conv1.weight: file (16, 8, 3, 3) vs model (8, 8, 3, 3)" in text
    assert not (tmp_path / "a" / "out" / "summary.json").exists()
    other = save_weights(nn.Sequential(nn.Linear(3, 3)), tmp_path / "other.safetensors")
    result = run_cli(tmp_path / "b", changed(BASE, {"name": "bit", "kwargs": SMALL, "weights": str(other)}))
    assert result.exit_code == 2 and "has no fc.weight" in " ".join(result.output.split())
    result = run_cli(tmp_path / "c", changed(BASE, {"name": "bit", "weights": str(tmp_path / "missing.safetensors")}))
    assert result.exit_code == 2 and "missing.safetensors not found" in " ".join(result.output.split())
