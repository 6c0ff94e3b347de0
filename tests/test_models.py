"""distil.models: every registered model builds for every input it claims, with the published sizes;
user factories by import path; every mistake is a ModelError that names what exists."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from distil.errors import ModelError
from distil.models import MODELS, build_model, count_parameters, list_models, register_model

IMAGES = [((1, 28, 28), 10), ((3, 32, 32), 100), ((1, 8, 8), 10)]
SIGNALS = [((1, 40), 10), ((3, 17), 5)]
FEATURES = [((20,), 3), ((2, 3, 4, 5), 4)]  # tabular and other shapes: only the MLP takes them
SIGNAL_MODELS = {"cnn1d"}
ANY_SHAPE = {"mlp"}
TEXT_MODELS = {n for n, entry in MODELS.items() if entry.text}  # tested in test_text_models.py
IMAGE_MODELS = sorted(set(MODELS) - SIGNAL_MODELS - TEXT_MODELS)
RESIDUAL = sorted(n for n in MODELS if n.startswith(("resnet", "wrn")))
THIS = Path(__file__).stem  # this module, importable once its folder is on sys.path


# --- user factories, imported by path as f"{THIS}:name" -------------------------------------------


def tiny_factory(*, input_shape, num_classes, hidden=8):
    """Takes the data's shape and class count like a registered factory."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def fixed_factory(width=4):
    """Knows nothing of the data: fixed to 1×28×28 and 10 classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))


def kwargs_factory(**kwargs):
    """Takes anything: gets input_shape and num_classes along with the user's arguments."""
    return nn.Linear(math.prod(kwargs["input_shape"]), kwargs["num_classes"], bias=kwargs.get("bias", True))


class TinyNet(nn.Module):
    """An nn.Module class is a factory too."""

    def __init__(self, num_classes, scale=1.0):
        super().__init__()
        self.scale = scale
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale


def not_a_model(*, input_shape, num_classes):
    return "a string"


NOT_CALLABLE = 3


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


# --- every model, every input it takes ----------------------------------------------------------


def check_logits(model, input_shape, num_classes):
    model.train()
    out = model(torch.randn(2, *input_shape))
    assert isinstance(out, torch.Tensor) and out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, *input_shape)).shape == (1, num_classes)


@pytest.mark.parametrize("shape, classes", IMAGES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_models_return_logits(name, shape, classes):
    torch.manual_seed(0)
    check_logits(build_model(name, input_shape=shape, num_classes=classes), shape, classes)


@pytest.mark.parametrize("shape, classes", SIGNALS)
@pytest.mark.parametrize("name", sorted(SIGNAL_MODELS | ANY_SHAPE))
def test_signal_models_return_logits(name, shape, classes):
    torch.manual_seed(0)
    check_logits(build_model(name, input_shape=shape, num_classes=classes), shape, classes)


@pytest.mark.parametrize("shape, classes", FEATURES)
def test_mlp_takes_any_shape(shape, classes):
    check_logits(build_model("mlp", input_shape=shape, num_classes=classes), shape, classes)


@pytest.mark.parametrize("name", ["cnn", "resnet8", "wrn", "mobilenetv2", "cnn1d"])
def test_convolutional_models_refuse_other_shapes(name):
    with pytest.raises(ModelError, match="takes"):
        build_model(name, input_shape=(20,), num_classes=3)


def test_every_model_is_tested_for_some_input():
    assert set(MODELS) == set(IMAGE_MODELS) | SIGNAL_MODELS | TEXT_MODELS
    assert TEXT_MODELS == {"bilstm", "lstm", "textcnn", "boe", "text_transformer", "minilm"} | {"bilstm_tagger", "lstm_tagger", "cnn_tagger", "transformer_tagger"} | {"gpt"}  # gpt: test_lm_models.py
    assert {"mlp", "cnn", "cnn1d", "resnet", "wrn", "mobilenetv2"} <= set(MODELS)
    presets = {f"resnet{d}" for d in (8, 14, 20, 32, 44, 56, 110)} | {"resnet8x4", "resnet32x4"}
    assert presets | {"wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"} <= set(MODELS)


@pytest.mark.parametrize("name", sorted(set(IMAGE_MODELS) - ANY_SHAPE))
def test_image_models_refuse_signals_and_say_what_to_use(name):
    with pytest.raises(ModelError, match=r"\(C, H, W\).*cnn1d"):
        build_model(name, input_shape=(1, 40), num_classes=10)


def test_cnn1d_refuses_images():
    with pytest.raises(ModelError, match=r"\(C, L\)"):
        build_model("cnn1d", input_shape=(1, 28, 28), num_classes=10)


@pytest.mark.parametrize("shape", [(1, 28, 0), (0, 28, 28), (), "1x28x28", (1.0, 28, 28), None])
def test_bad_input_shape(shape):
    with pytest.raises(ModelError, match="input_shape"):
        build_model("mlp", input_shape=shape, num_classes=10)


@pytest.mark.parametrize("classes", [0, -1, 2.0, True])
def test_bad_num_classes(classes):
    with pytest.raises(ModelError, match="num_classes"):
        build_model("mlp", input_shape=(1, 28, 28), num_classes=classes)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = build_model("resnet8", input_shape=(1, 28, 28), num_classes=10)
    torch.manual_seed(3)
    b = build_model("resnet8", input_shape=(1, 28, 28), num_classes=10)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# --- sizes --------------------------------------------------------------------------------------

# RepDistiller's published parameter counts (Tian et al. 2020) for 3×32×32 inputs and 100 classes.
PUBLISHED = {
    "resnet56": 0.86e6,
    "resnet110": 1.74e6,
    "resnet8x4": 1.23e6,
    "resnet32x4": 7.43e6,
    "wrn_40_2": 2.25e6,
    "wrn_16_2": 0.70e6,
}


@pytest.mark.parametrize("name, expected", sorted(PUBLISHED.items()))
def test_published_parameter_counts(name, expected):
    model = build_model(name, input_shape=(3, 32, 32), num_classes=100)
    assert count_parameters(model) == pytest.approx(expected, rel=0.01)


def test_mobilenetv2_sizes():
    # torchvision's mobilenet_v2 at ImageNet size, and RepDistiller's MobileNetV2 (width 0.5), 0.81M
    assert count_parameters(build_model("mobilenetv2", input_shape=(3, 224, 224), num_classes=1000)) == 3_504_872
    half = build_model("mobilenetv2", input_shape=(3, 32, 32), num_classes=100, width_mult=0.5)
    assert count_parameters(half) == pytest.approx(0.81e6, rel=0.01)


def test_generic_models_equal_their_presets():
    shape = {"input_shape": (3, 32, 32), "num_classes": 100}
    pairs = [
        (("resnet", {"depth": 32, "widths": (32, 64, 128, 256)}), "resnet32x4"),
        (("resnet", {"depth": 56, "widths": (16, 32, 64)}), "resnet56"),
        (("wrn", {"depth": 40, "width": 2}), "wrn_40_2"),
    ]
    for (generic, kwargs), preset in pairs:
        assert count_parameters(build_model(generic, **kwargs, **shape)) == count_parameters(build_model(preset, **shape)), preset


def test_small_cnn_student_has_a_tenth_of_the_default_cnns_parameters():
    shape = {"input_shape": (1, 28, 28), "num_classes": 10}
    teacher = count_parameters(build_model("cnn", **shape))
    student = count_parameters(build_model("cnn", widths=(8, 16, 32), **shape))
    # recorded: the demo's sizes (Fashion-MNIST); a change here changes the demo's table
    assert (teacher, student) == (288_170, 18_482)
    assert student <= teacher / 10


def test_count_parameters_counts_shared_parameters_once_and_no_buffers():
    lin = nn.Linear(3, 2)
    assert count_parameters(nn.Sequential(lin, lin, nn.BatchNorm1d(2))) == 8 + 4


def test_count_parameters_of_a_lazy_model_says_what_to_do():
    model = nn.Sequential(nn.LazyLinear(2))
    with pytest.raises(ModelError, match=r"lazy parameters \(0.weight, 0.bias\); run one forward pass first"):
        count_parameters(model)
    model(torch.randn(1, 3))
    assert count_parameters(model) == 8


# --- module names, for forward hooks ------------------------------------------------------------


@pytest.mark.parametrize("name", RESIDUAL)
def test_residual_networks_have_named_stages(name):
    modules = dict(build_model(name, input_shape=(3, 32, 32), num_classes=100).named_modules())
    assert {"conv1", "layer1", "layer2", "layer3", "fc"} <= set(modules)
    assert "layer4" not in modules


@pytest.mark.parametrize(
    "name, shape, names",
    [
        ("mlp", (1, 28, 28), {"flatten", "layer1", "layer2", "fc", "layer1.linear"}),
        ("cnn", (1, 28, 28), {"stage1", "stage2", "stage3", "stage1.conv2", "stage3.pool", "pool", "fc"}),
        ("cnn1d", (1, 40), {"stage1", "stage2", "stage3", "fc"}),
        ("mobilenetv2", (3, 32, 32), {"stem", *(f"stage{i}" for i in range(1, 8)), "stage2.0.expand", "head", "fc"}),
    ],
)
def test_stages_are_named(name, shape, names):
    model = build_model(name, input_shape=shape, num_classes=10)
    assert names <= set(dict(model.named_modules()))
    assert isinstance(model.get_submodule("fc"), nn.Linear) and model.get_submodule("fc").out_features == 10


@pytest.mark.parametrize(
    "name, path, shape",
    [
        ("resnet20", "layer1", (16, 32, 32)),
        ("resnet20", "layer3", (64, 8, 8)),
        ("resnet8x4", "layer3", (256, 8, 8)),
        ("wrn_16_2", "layer2", (64, 16, 16)),
        ("cnn", "stage2", (64, 8, 8)),
        ("mobilenetv2", "head", (1280, 2, 2)),
    ],
)
def test_a_forward_hook_taps_a_stage(name, path, shape):
    model = build_model(name, input_shape=(3, 32, 32), num_classes=10).eval()
    seen = []
    model.get_submodule(path).register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    model(torch.randn(2, 3, 32, 32))
    assert seen == [(2, *shape)]


PRE_RELU = [("resnet8", "layer1.0.bn1"), ("wrn_16_1", "layer2.0.bn1"), ("cnn", "stage1.bn1"), ("mobilenetv2", "stem.bn")]


@pytest.mark.parametrize("name, path", PRE_RELU)
def test_a_hook_before_a_relu_keeps_the_negative_values(name, path):
    model = build_model(name, input_shape=(3, 16, 16), num_classes=10)
    seen = []
    model.get_submodule(path).register_forward_hook(lambda _m, _i, out: seen.append(out))
    model(torch.randn(4, 3, 16, 16))
    assert (seen[0] < 0).any()  # an in-place ReLU after it would have overwritten them


@pytest.mark.parametrize("side, final", [(8, 1), (28, 2), (32, 2), (64, 2), (96, 3)])
def test_mobilenetv2_downsampling_rule(side, final):
    model = build_model("mobilenetv2", input_shape=(1, side, side), num_classes=10, width_mult=0.25).eval()
    seen = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-2:]))
    model(torch.randn(1, 1, side, side))
    assert seen == [(final, final)]


def test_cnn_skips_pools_on_tiny_inputs():
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, widths=(4, 4, 4, 4))
    assert [hasattr(getattr(model, f"stage{i}"), "pool") for i in range(1, 5)] == [True, True, False, False]


# --- kwargs ---------------------------------------------------------------------------------------


def test_kwargs_reach_the_model():
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=[5], dropout=0.5)
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [5, 3]
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=3, widths=[4, 6], convs_per_stage=3)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 6


def test_unknown_kwarg_names_it_and_the_accepted_ones():
    with pytest.raises(ModelError) as err:
        build_model("cnn", input_shape=(1, 28, 28), num_classes=10, widht=(8, 16))
    message = str(err.value)
    assert "'widht'" in message and "did you mean 'widths'" in message
    assert all(arg in message for arg in ("widths", "convs_per_stage", "dropout"))


def test_a_preset_refuses_the_generic_models_arguments():
    with pytest.raises(ModelError, match=r"'resnet56' got unexpected argument 'depth'.*no arguments besides"):
        build_model("resnet56", input_shape=(3, 32, 32), num_classes=100, depth=20)
    with pytest.raises(ModelError, match="'width'"):
        build_model("wrn_16_2", input_shape=(3, 32, 32), num_classes=100, width=4)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("resnet", {"depth": 9}, r"depth must be 6n\+2.*got 9; nearest: 8, 14"),
        ("resnet", {"depth": 2}, r"6n\+2"),
        ("resnet", {"depth": -20}, "depth must be a positive integer"),
        ("resnet", {"widths": (16, -32, 64)}, r"widths\[1\]"),
        ("resnet", {"widths": (16, 32)}, "widths must be"),
        ("wrn", {"depth": 15}, r"6n\+4"),
        ("wrn", {"width": 0}, "width"),
        ("wrn", {"width": 1.5}, "width"),
        ("wrn_40_2", {"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ("mlp", {"hidden": 256}, "hidden must be a list"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("cnn", {"widths": ()}, "widths must not be empty"),
        ("cnn", {"widths": "32,64"}, "widths must be a list"),
        ("cnn", {"convs_per_stage": 0}, "convs_per_stage"),
        ("mobilenetv2", {"width_mult": 0}, "width_mult"),
    ],
)
def test_senseless_kwargs(name, kwargs, match):
    with pytest.raises(ModelError, match=match):
        build_model(name, input_shape=(3, 32, 32), num_classes=10, **kwargs)


def test_resnet_widths_may_omit_the_stem():
    model = build_model("resnet", input_shape=(3, 32, 32), num_classes=10, depth=8, widths=(8, 16, 32))
    assert model.conv1.out_channels == 8 and model.layer3[0].conv1.out_channels == 32


# --- names ----------------------------------------------------------------------------------------


def test_unknown_name_lists_known_names_closest_first():
    with pytest.raises(ModelError) as err:
        build_model("resnet21", input_shape=(3, 32, 32), num_classes=10)
    message = str(err.value)
    assert "unknown model 'resnet21'" in message and "did you mean" in message
    listed = message.split("closest first:")[1]
    assert set(MODELS) <= {n.strip() for n in listed.split(",")}
    assert listed.index("resnet20") < listed.index("mobilenetv2") and listed.index("resnet20") < listed.index("mlp")
    assert "package.module:factory" in message


def test_list_models_describes_every_model_without_touching_the_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    listing = list_models()
    assert torch.equal(torch.rand(3), expected)
    assert list(listing) == list(MODELS)
    assert all(isinstance(d, str) and d for d in listing.values())
    assert "288.2k params at 1×28×28" in listing["cnn"] and "1×40" in listing["cnn1d"]


def test_register_model_adds_a_buildable_name():
    @register_model("test_tiny", "a test model")
    def test_tiny(*, input_shape, num_classes, hidden=4):
        return tiny_factory(input_shape=input_shape, num_classes=num_classes, hidden=hidden)

    try:
        assert list_models()["test_tiny"].startswith("a test model")
        model = build_model("test_tiny", input_shape=(2, 5), num_classes=3, hidden=6)
        assert model(torch.randn(4, 2, 5)).shape == (4, 3)
        with pytest.raises(ModelError, match="already registered"):
            register_model("test_tiny")(tiny_factory)
    finally:
        MODELS.pop("test_tiny", None)


def test_register_model_reports_a_typeerror_of_the_factory():
    @register_model("test_broken")
    def test_broken(**kwargs):
        """Docstring line becomes the description."""
        return nn.Linear(2, 2, nonsense=1)

    try:
        assert list_models()["test_broken"] == "Docstring line becomes the description."
        with pytest.raises(ModelError, match=r"'test_broken' could not be built with arguments \{'x': 1\}.*nonsense"):
            build_model("test_broken", input_shape=(1, 2), num_classes=2, x=1)
    finally:
        MODELS.pop("test_broken", None)


@pytest.mark.parametrize("name", ["a:b", "", " mlp2"])
def test_register_model_refuses_bad_names(name):
    with pytest.raises(ModelError, match="model name"):
        register_model(name)


# --- user factories -----------------------------------------------------------------------------


def test_user_factory_with_data_arguments(on_path):
    model = build_model(f"{THIS}:tiny_factory", input_shape=(1, 8, 8), num_classes=4, hidden=16)
    assert model[1].in_features == 64 and model[1].out_features == 16 and model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_user_factory_without_data_arguments(on_path):
    model = build_model(f"{THIS}:fixed_factory", input_shape=(1, 28, 28), num_classes=10, width=7)
    assert model[1].out_features == 7 and model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_user_factory_taking_any_kwargs_gets_the_data_arguments(on_path):
    model = build_model(f"{THIS}:kwargs_factory", input_shape=(1, 4, 4), num_classes=3, bias=False)
    assert (model.in_features, model.out_features, model.bias) == (16, 3, None)


def test_user_module_class_as_factory(on_path):
    model = build_model(f"{THIS}:TinyNet", input_shape=(1, 4, 4), num_classes=3, scale=2.0)
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3) and model.scale == 2.0


def test_user_factory_unknown_kwarg(on_path):
    with pytest.raises(ModelError, match=r"unexpected argument 'depth'.*it accepts width=4"):
        build_model(f"{THIS}:fixed_factory", input_shape=(1, 28, 28), num_classes=10, depth=3)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("no_such_module_xyz:factory", r"cannot import module 'no_such_module_xyz'.*PYTHONPATH"),
        ("distil.models.no_such_module:factory", "cannot import module 'distil.models.no_such_module'"),
        (f"{THIS}:tiny_factroy", r"no attribute 'tiny_factroy'.*closest first: tiny_factory"),
        (f"{THIS}:TinyNet.missing", r"no attribute 'missing'"),
        (f"{THIS}:NOT_CALLABLE", r"is not callable \(type int\)"),
        (f"{THIS}:not_a_model", r"returned str, expected a torch.nn.Module"),
        (f"{THIS}:", "expected the form 'package.module:factory'"),
        (f"{THIS}:a:b", "one ':'"),
    ],
)
def test_user_factory_errors(on_path, spec, match):
    with pytest.raises(ModelError, match=match):
        build_model(spec, input_shape=(1, 28, 28), num_classes=10)


def test_user_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_models_xyz.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"importing module 'broken_models_xyz' raised RuntimeError: boom"):
        build_model("broken_models_xyz:factory", input_shape=(1, 28, 28), num_classes=10)
