"""Low-rank factorization: exact at full rank, ranks from energy and ratio, multiply-add counts, bad ranks."""

import pytest
import torch
from torch import nn

from distil.compress import lowrank, prune, quantize
from distil.compress.lowrank import LowRankError, RankRule
from distil.errors import ConfigError
from distil.models import build_model, count_parameters


def _close(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(16, 32, 3, padding=1, bias=True),
        nn.Conv2d(16, 24, 3, stride=2, padding=1),
        nn.Conv2d(16, 8, (3, 5), padding=(2, 2), dilation=(2, 1)),
    ],
)
def test_full_rank_reproduces_a_convolution_exactly(conv):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 11, 12)
    assert _close(lowrank.factorize_tucker2(conv, conv.out_channels, conv.in_channels), conv, x) < 1e-5
    assert _close(lowrank.factorize_spatial(conv, *lowrank.full_ranks(conv, "spatial")), conv, x) < 1e-5


def test_full_rank_reproduces_linear_pointwise_and_1d_layers_exactly():
    torch.manual_seed(0)
    linear, pointwise, conv1d = nn.Linear(20, 7), nn.Conv2d(12, 6, 1, stride=2), nn.Conv1d(6, 10, 3, padding=1)
    assert _close(lowrank.factorize_linear(linear, 7), linear, torch.randn(5, 20)) < 1e-5
    assert _close(lowrank.factorize_pointwise(pointwise, 6), pointwise, torch.randn(2, 12, 9, 9)) < 1e-5
    assert _close(lowrank.factorize_tucker2(conv1d, 10, 6), conv1d, torch.randn(2, 6, 9)) < 1e-5


def _with_singular_values(values, rows=12, cols=9):
    """A rows × cols matrix whose singular values are ``values`` (random orthogonal U, V)."""
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=g))
    v, _ = torch.linalg.qr(torch.randn(cols, len(values), generator=g))
    return u @ torch.diag(torch.tensor(values)) @ v.t()


@pytest.mark.parametrize("energy, rank", [(0.7, 1), (0.9, 2), (0.95, 3), (1.0, 4)])
def test_energy_picks_the_hand_computed_rank(energy, rank):
    # σ = 4, 2, 1, 1, 0…: σ² = 16, 4, 1, 1 of 22; shares 0.727, 0.909, 0.955, 1
    layer = nn.Linear(9, 12)
    with torch.no_grad():
        layer.weight.copy_(_with_singular_values([4.0, 2.0, 1.0, 1.0]))
    assert lowrank.energy_rank(torch.tensor([4.0, 2.0, 1.0, 1.0, 0.0]), energy) == rank
    assert lowrank.plan("fc", layer, RankRule(energy=energy)).ranks == (rank,)
    # a ratio of the full rank (min(12, 9) = 9), rounded up to a multiple
    assert lowrank.plan("fc", layer, RankRule(rank_ratio=0.5)).ranks == (5,)
    assert lowrank.plan("fc", layer, RankRule(rank_ratio=0.5, multiple=4)).ranks == (8,)
    # rank 2 of a rank-4 matrix keeps 20/22 of Σσ²: the error is exactly σ₃, σ₄
    factored = lowrank.factorize_linear(layer, 2)
    residual = layer.weight - factored[1].weight @ factored[0].weight
    assert torch.linalg.matrix_norm(residual).item() == pytest.approx(2**0.5, rel=1e-5)


def test_parameter_and_multiply_add_counts():
    linear = lowrank.factorize_linear(nn.Linear(64, 32), 8)
    assert count_parameters(linear) == 64 * 8 + 8 * 32 + 32
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    tucker = lowrank.factorize_tucker2(conv, 8, 4)  # r_out 8, r_in 4
    assert [tuple(m.weight.shape) for m in tucker] == [(4, 16, 1, 1), (8, 4, 3, 3), (32, 8, 1, 1)]
    assert count_parameters(tucker) == 16 * 4 + 4 * 8 * 9 + 8 * 32 == lowrank.tucker2_macs(conv, 8, 4) == 608
    x = torch.randn(1, 16, 10, 10)
    assert lowrank.model_macs(conv, x) == 16 * 32 * 9 * 100
    assert lowrank.model_macs(tucker, x) == 608 * 100
    spatial = lowrank.factorize_spatial(conv, 5)
    assert lowrank.model_macs(spatial, x) == lowrank.spatial_macs(conv, 5) * 100 == 5 * (16 * 3 + 32 * 3) * 100


def test_layers_that_would_not_get_cheaper_are_left_whole():
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, widths=(16, 32, 64), convs_per_stage=1)
    x = torch.randn(2, 1, 28, 28)
    before = lowrank.model_macs(model, x)
    plans = {p.layer: p for p in lowrank.factorize(model, RankRule(rank_ratio=0.5, multiple=8))}
    # one input channel (r_in 1, r_out 8): 1·1 + 1·8·9 + 8·16 = 201 is not below 1·16·9 = 144; 64 → 10 at rank 5 → 8: 8·74 = 592 < 640
    assert plans["stage1.conv1"].skipped == "not cheaper: 201 multiply-adds factorized vs 144"
    assert plans["fc"].skipped is None and plans["fc"].ranks == (8,) and plans["fc"].macs_after == 592
    assert plans["stage2.conv1"].skipped is None and plans["stage2.conv1"].ranks == (16, 8)
    assert isinstance(model.stage2.conv1, nn.Sequential) and isinstance(model.stage1.conv1, nn.Conv2d)
    assert lowrank.model_macs(model, x) < 0.5 * before
    with pytest.raises(LowRankError, match="leaves every layer"):
        lowrank.factorize(model.stage1, RankRule(rank_ratio=1.0))


def test_factorized_model_prunes_and_quantizes():
    """lowrank → channel pruning → int8: the factorized layers are ordinary convolutions to the later steps."""
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 16, 16), num_classes=10, widths=(16, 32), convs_per_stage=1).eval()
    x = torch.randn(64, 1, 16, 16)
    lowrank.factorize(model, RankRule(rank_ratio=0.5, multiple=8))
    info = prune.channel_prune(model, 0.5, x[:8], multiple_of=8)
    assert info["channels"]["stage2.conv1.1"] == "16 → 8"  # the Tucker-2 core's output rank is a channel space too
    int8 = quantize.static_int8(model, x)
    assert (int8(x).argmax(1) == model(x).argmax(1)).float().mean() > 0.8


@pytest.mark.parametrize(
    "ranks, message",
    [
        ({"fc": 11}, "compress.lowrank.ranks.fc: rank 11 is outside 1..10"),
        ({"stage2.conv1": [40, 4]}, "compress.lowrank.ranks.stage2.conv1: rank 40 is outside 1..32"),
        ({"stage2.conv1": [4, 4, 4]}, "expected 2 ranks"),
        ({"stage9.conv1": 4}, "has no Linear or convolution named 'stage9.conv1'"),
    ],
)
def test_a_rank_the_layer_does_not_have_is_a_config_error(ranks, message):
    model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, widths=(16, 32, 64), convs_per_stage=1)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        lowrank.factorize(model, RankRule(ranks=ranks))


@pytest.mark.parametrize("energy", [0.0, -0.1, 1.5])
def test_energy_outside_range_is_a_config_error(energy):
    with pytest.raises(ConfigError, match="compress.lowrank.energy must be in"):
        lowrank.energy_rank(torch.ones(3), energy)


def test_kept_channels_round_to_the_simd_multiple():
    assert [prune.kept_channels(w, 0.3) for w in (16, 32, 64)] == [11, 22, 45]
    assert [prune.kept_channels(w, 0.3, 8) for w in (16, 32, 64)] == [8, 24, 48]
    assert [prune.kept_channels(w, 0.3, 16) for w in (16, 32, 64)] == [16, 16, 48]
    assert prune.kept_channels(4, 0.5, 8) == 4  # never more than the layer has


def test_min_saving_leaves_layers_that_save_little_whole():
    conv = nn.Conv2d(32, 64, 3, padding=1)
    # ranks (48, 32): 32·32 + 32·48·9 + 48·64 = 17920 of 18432 multiply-adds, 3 % saved
    rule = RankRule(ranks={"c": [48, 32]})
    assert lowrank.plan("c", conv, rule).skipped is None
    kept = lowrank.plan("c", conv, RankRule(ranks={"c": [48, 32]}, min_saving=0.25))
    assert kept.skipped == "saves 3% of 18432 multiply-adds, less than min_saving 25%"


def test_custom_convolutions_are_left_whole_and_1d_layers_under_the_spatial_form_too():
    """BiT's StdConv2d standardizes its weight in the forward: factorizing the raw weight would not
    reproduce it, so it stays whole (named); a Conv1d under conv=spatial is left whole, not a crash."""
    from distil.models.resnet_v2 import StdConv2d

    torch.manual_seed(0)
    model = nn.Sequential(StdConv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    x = torch.randn(2, 8, 4, 4)
    before = model(x)
    plans = {p.layer: p for p in lowrank.factorize(model, RankRule(rank_ratio=0.5, multiple=1))}
    assert "custom layer (StdConv2d)" in plans["0"].skipped and isinstance(model[0], StdConv2d)
    assert plans["3"].skipped is None  # the Linear is factorized
    assert model(x).shape == before.shape
    one_d = nn.Sequential(nn.Conv1d(4, 32, 3), nn.Flatten(), nn.Linear(32 * 6, 5))
    lowrank.check_ranks(one_d, {}, "spatial")
    assert lowrank.plan("0", one_d[0], RankRule(rank_ratio=0.5), "spatial").skipped == "the spatial form is for 2-D convolutions"


def test_serving_picks_the_models_own_onnx_file_not_a_factorized_one(tmp_path):
    from distil.serve.repository import compressed_onnx

    (tmp_path / "compressed").mkdir()
    for stem in ("student_kd.lowrank", "student_kd.lowrank.pruned", "student_kd", "student_kd.int8"):
        (tmp_path / "compressed" / f"{stem}.onnx").write_bytes(b"")
    assert compressed_onnx(tmp_path, "student_kd").name == "student_kd.onnx"
    (tmp_path / "compressed" / "student_kd.onnx").unlink()
    assert compressed_onnx(tmp_path, "student_kd").name == "student_kd.int8.onnx"  # no plain export: the first compressed one
