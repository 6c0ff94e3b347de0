"""Taps read layers by module path without changing the model; connectors bridge shapes."""

import pytest
import torch
from torch import nn

from distil.engine.connectors import build_connector
from distil.engine.taps import Taps, find_module
from distil.models import build_model


def resnet():
    torch.manual_seed(0)
    return build_model("resnet8", input_shape=(1, 28, 28), num_classes=10)


def test_taps_capture_outputs_and_inputs_and_leave_no_hooks():
    model = resnet().eval()
    x = torch.randn(2, 1, 28, 28)
    with Taps(model, ["layer2", "fc:input", "logits"]) as taps:
        out = taps.forward(x)
    assert set(out) == {"logits", "layer2", "fc:input"}
    assert out["layer2"].shape[:2] == (2, 32)
    assert out["fc:input"].shape == (2, 64)
    assert torch.allclose(out["logits"], model(x))
    assert torch.allclose(model.fc(out["fc:input"]), out["logits"], atol=1e-6)
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_removed_even_when_forward_fails():
    model = resnet()
    with pytest.raises(RuntimeError), Taps(model, ["layer1"]) as taps:
        taps.forward(torch.randn(2, 3, 28, 28))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


def test_unknown_tap_lists_nearest_paths():
    with pytest.raises(KeyError, match=r"no module 'layer4' \(nearest: layer3, layer2, layer1"):
        find_module(resnet(), "layer4")
    with pytest.raises(KeyError, match=r"nearest: layer1.0.conv2, layer1.0.conv1"):
        find_module(resnet(), "layer1.0.conv")


def test_unused_module_is_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    model = Net()
    with pytest.raises(RuntimeError, match="did not fire"), Taps(model, ["spare"]) as taps:
        taps.forward(torch.randn(1, 4))


@pytest.mark.parametrize(
    ("s", "t"),
    [((2, 16, 14, 14), (2, 64, 7, 7)), ((2, 16, 7, 7), (2, 32, 14, 14)), ((2, 8, 40), (2, 16, 10)), ((2, 24), (2, 64)), ((2, 32, 7, 7), (2, 32, 7, 7))],
)
def test_connector_maps_student_shape_to_teacher_shape(s, t):
    connector = build_connector(s, t)
    y = connector(torch.randn(s))
    assert y.shape == t
    if s == t:
        assert isinstance(connector, nn.Identity)
    else:
        y.sum().backward()
        assert all(p.grad is not None for p in connector.parameters())


def test_connector_refuses_different_ranks():
    with pytest.raises(ValueError, match="different ranks"):
        build_connector((2, 16, 7, 7), (2, 64))


@pytest.mark.parametrize(
    ("arch", "kwargs", "stages"),
    [
        ("resnet8", {}, ["layer1", "layer2", "layer3"]),
        ("cnn", {"widths": [8, 16, 32]}, ["stage1", "stage2", "stage3"]),
        ("wrn_16_1", {}, ["layer1", "layer2", "relu"]),  # pre-activation: the stage ends after the final BN-ReLU
    ],
)
def test_stage_and_embedding_taps_are_found_from_shapes(arch, kwargs, stages):
    from distil.engine.taps import embedding_tap, resolve_taps

    model = build_model(arch, input_shape=(1, 28, 28), num_classes=10, **kwargs)
    x = torch.randn(2, 1, 28, 28)
    assert resolve_taps(model, x, "stages") == stages
    assert resolve_taps(model, x, "last_stage") == stages[-1:]
    assert embedding_tap(model) == "fc:input"
    assert model.training  # probing restored the mode
