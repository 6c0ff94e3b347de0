"""Pruning, int8 and ONNX on real small models (scikit-learn digits, 8×8) and random tensors."""

import copy

import pytest
import torch
from torch import nn

from distil import load_dataset, train
from distil.compress import prune, quantize
from distil.compress.export import OnnxModel, ParityError, check_parity, export_onnx, parity, quantize_onnx
from distil.compress.prune import PruneError
from distil.compress.quantize import QuantizeError
from distil.config import COMPRESS_STEPS
from distil.models import build_model, count_parameters


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_size=0.15, seed=0)


@pytest.fixture(scope="module")
def trained_cnn(digits):
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=digits.input_shape, num_classes=10, widths=(8, 16), convs_per_stage=1)
    train(model, digits, epochs=4, batch_size=64, lr=0.1)
    return model.eval()


# ------------------------------------------------------------------------------------------------ pruning


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_magnitude_prune_reaches_the_sparsity(sparsity):
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32, 16))
    prune.magnitude_prune(model, sparsity)
    prune.finalize(model)
    total = sum(m.weight.numel() for m, _ in prune.prunable_weights(model))
    assert abs(prune.sparsity_of(model) - sparsity) <= 1 / total
    assert not any(n.endswith(("_orig", "_mask")) for n in model.state_dict())


def test_magnitude_prune_is_global_and_iterative():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
    with torch.no_grad():
        model.fc.weight.mul_(100)  # the big layer keeps its weights; the small one loses more
    prune.magnitude_prune(model, 0.5)
    prune.magnitude_prune(model, 0.75)  # a growing target, not 75 % of what is left
    assert abs(prune.sparsity_of(model) - 0.75) < 0.01
    assert (model.fc.weight == 0).float().mean() < (model.layer1.linear.weight == 0).float().mean()


def test_pruned_weights_stay_zero_while_training(digits):
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, hidden=(32,))
    prune.magnitude_prune(model, 0.8)
    train(model, digits, epochs=1, batch_size=64, lr=0.1)
    prune.finalize(model)
    assert prune.sparsity_of(model) >= 0.8 - 1e-3


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_range_is_an_error(sparsity):
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(PruneError, match=r"\[0, 1\)"):
        prune.magnitude_prune(model, sparsity)


@pytest.mark.parametrize(
    "arch, shape, kwargs",
    [
        ("cnn", (1, 8, 8), {"widths": (8, 16), "convs_per_stage": 2}),
        ("mlp", (1, 8, 8), {"hidden": (32, 16)}),
        ("resnet8", (3, 8, 8), {}),
        ("cnn1d", (1, 16), {"widths": (8, 16)}),
    ],
)
def test_channel_pruning_shrinks_the_model_and_keeps_it_runnable(arch, shape, kwargs):
    torch.manual_seed(0)
    model = build_model(arch, input_shape=shape, num_classes=10, **kwargs).eval()
    x = torch.randn(5, *shape)
    before = count_parameters(model)
    info = prune.channel_prune(model, 0.5, x)
    after = count_parameters(model)
    assert after < 0.6 * before
    assert model(x).shape == (5, 10)
    assert info["left_whole"]["fc"] == "model output"  # the logits keep their classes
    # dense and smaller: no zeros were introduced, the layers themselves are narrower
    assert prune.sparsity_of(model) < 0.01


def test_channel_pruning_keeps_the_kept_channels_exactly():
    """Removing channels whose filters are zero does not change the output at all."""
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,)).eval()
    with torch.no_grad():
        model.layer1.linear.weight[8:] = 0
        model.layer1.linear.bias[8:] = 0
    x = torch.randn(7, 1, 8, 8)
    expected = model(x)
    prune.channel_prune(model, 0.5, x)
    assert model.layer1.linear.out_features == 8 and model.fc.in_features == 8
    torch.testing.assert_close(model(x), expected)


def test_residual_groups_are_pruned_consistently():
    torch.manual_seed(0)
    model = build_model("resnet8", input_shape=(3, 8, 8), num_classes=10).eval()
    info = prune.channel_prune(model, 0.5, torch.randn(2, 3, 8, 8))
    # the stem and the first block's second conv write into the same add: one group, one choice
    assert "layer1.0.conv2+conv1" in info["channels"]
    assert model.conv1.out_channels == model.layer1[0].conv2.out_channels == 8


def test_pruned_model_loads_from_safetensors(tmp_path):
    from distil.weights import load_weights, save_weights

    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, widths=(8, 16)).eval()
    prune.channel_prune(model, 0.5, torch.randn(2, 1, 8, 8))
    path = save_weights(model, tmp_path / "p.safetensors")
    from safetensors.torch import load_file

    fresh = prune.resize_to(build_model("cnn", input_shape=(1, 8, 8), num_classes=10, widths=(8, 16)), load_file(path))
    load_weights(fresh, path)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), model(x))


class Branchy(nn.Module):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:
            x = x * 2
        return self.fc(x)


def test_untraceable_model_is_a_clear_error():
    with pytest.raises(PruneError, match="Branchy cannot be traced.*magnitude"):
        prune.channel_prune(Branchy(), 0.5, torch.randn(2, 1, 8, 8))
    with pytest.raises(QuantizeError, match="Branchy cannot be traced"):
        quantize.static_int8(Branchy(), torch.randn(4, 1, 8, 8))


# ------------------------------------------------------------------------------------------------ int8


def test_static_int8_agrees_with_fp32(trained_cnn, digits):
    q = quantize.static_int8(trained_cnn, digits.train.x[:256])
    assert quantize.unquantized_layers(q) == []
    result = parity(trained_cnn, q, digits.test.x)
    assert result.argmax_agreement >= 0.95
    tensors = quantize.int8_tensors(q)
    assert any(k.endswith(".int8") and v.dtype == torch.int8 for k, v in tensors.items())


def test_dynamic_int8_agrees_with_fp32(digits):
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, hidden=(64,))
    train(model, digits, epochs=2, batch_size=64, lr=0.1)
    result = parity(model, quantize.dynamic_int8(model), digits.test.x)
    assert result.argmax_agreement >= 0.95
    with pytest.raises(QuantizeError, match="no Linear"):
        quantize.dynamic_int8(nn.Sequential(nn.Conv2d(1, 2, 3)))


# ------------------------------------------------------------------------------------------------ ONNX


def test_onnx_export_parity_and_dynamic_batch(trained_cnn, digits, tmp_path):
    path = export_onnx(trained_cnn, digits.input_shape, tmp_path / "m.onnx", exporter="torchscript")
    onnx_model = OnnxModel(path)
    for batch in (1, 7):
        assert onnx_model(digits.test.x[:batch]).shape == (batch, 10)
    result = check_parity("onnx", parity(trained_cnn, onnx_model, digits.val.x), atol=1e-4)
    assert result.argmax_agreement == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # one file, no external data, no temporaries

    q = quantize_onnx(path, tmp_path / "m.int8.onnx", digits.train.x[:256])
    assert parity(trained_cnn, OnnxModel(q), digits.test.x).argmax_agreement >= 0.95


def test_dynamo_exporter_writes_one_file(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(16,)).eval()
    path = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    check_parity("onnx", parity(model, OnnxModel(path), torch.randn(9, 1, 8, 8)), atol=1e-4)


def test_parity_failure_names_the_step(trained_cnn, digits, tmp_path):
    other = copy.deepcopy(trained_cnn)
    with torch.no_grad():
        other.fc.bias.add_(torch.arange(10.0))
    path = export_onnx(other, digits.input_shape, tmp_path / "m.onnx", exporter="torchscript")
    with pytest.raises(ParityError, match=r"onnx: parity check failed: max \|onnxruntime − torch\|"):
        check_parity("onnx", parity(trained_cnn, OnnxModel(path), digits.val.x), atol=1e-3)


# ------------------------------------------------------------------------------------------------ step registry


def test_every_configurable_step_has_a_function():
    """config validates ``compress.steps`` against COMPRESS_STEPS without importing compress; the
    pipeline must then find a function for each name, and have none the config would refuse."""
    from distil.compress.steps import CLAIMS, STEPS

    assert tuple(STEPS) == COMPRESS_STEPS == tuple(CLAIMS) == ("prune", "lowrank", "int8", "onnx", "onnx-int8")
    assert all(callable(fn) for fn in STEPS.values())


def test_each_row_is_compared_with_the_step_before():
    """int8 forms against the fp32 form of the same model, an ONNX export of a changed model against the
    ONNX export before the change, anything else against the model it was made from."""
    from distil.compress.pipeline import reference, speedup

    def r(name, method, runtime, source=None, b1=1.0, b256=100.0):
        return {"name": name, "method": method, "runtime": runtime, "source": source, "latency_ms_b1": b1, "throughput_b256": b256}

    rows = [r("s", "kd", "torch"), r("s.onnx", "onnx", "onnxruntime", "s", b1=0.25, b256=400.0), r("s.onnx-int8", "onnx-int8", "onnxruntime", "s"),
            r("s.pruned", "pruned", "torch", "s"), r("s.pruned.int8", "int8", "torch-int8", "s.pruned")]  # fmt: skip
    expected = {"s.onnx": "s", "s.onnx-int8": "s.onnx", "s.pruned": "s", "s.pruned.int8": "s.pruned"}
    for i, row in enumerate(rows[1:], start=1):
        assert reference(rows[:i], row)["name"] == expected[row["name"]]
    pruned_onnx = r("s.pruned.onnx", "onnx", "onnxruntime", "s.pruned", b1=0.2, b256=500.0)
    assert speedup(rows, pruned_onnx) == {"over": "s.onnx", "b1": 1.25, "b256": 1.25}
    assert reference(rows, r("s.pruned.onnx-int8", "onnx-int8", "onnxruntime", "s.pruned"))["name"] == "s.pruned"
