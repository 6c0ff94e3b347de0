"""PyTorch int8 quantization behind a small interface; the only module of distil that imports ``torch.ao``.

``torch.ao.quantization`` (FX graph mode) is deprecated in torch 2.13 and will move to torchao; keeping
it here means one file changes when it goes. Its deprecation warnings are contained in
:func:`_quiet` rather than shown to every user of ``distil compress``.

- :func:`static_int8`: post-training static quantization (Jacob et al., 2018, arXiv:1712.05877):
  conv/linear weights int8 per channel, activations uint8 with ranges observed on calibration data;
  conv → BN → ReLU are fused first. Backend ``x86`` (fbgemm kernels).
- :func:`dynamic_int8`: Linear and LSTM weights int8, activations quantized on the fly per batch; no
  calibration, the right choice for Linear-heavy models (MLPs, transformer blocks) and for text
  models, whose token-id inputs static quantization cannot observe (it refuses them).
- :func:`prepare_qat` / :func:`convert`: quantization-aware training; the prepared model trains with
  fake quantization (any objective, the KD loss included), then converts to int8.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from distil.errors import DistilError

BACKENDS = ("x86", "fbgemm", "qnnpack")


class QuantizeError(DistilError):
    """The model cannot be quantized as asked: which layer, and why."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao")
        warnings.filterwarnings("ignore", message=r".*quantiz.*")
        yield


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise QuantizeError(f"int8 backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend not in torch.backends.quantized.supported_engines:
        raise QuantizeError(f"int8 backend {backend!r} is not supported by this torch build (supported: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = backend
    return backend


def _prepare(model: nn.Module, example: torch.Tensor, backend: str, qat: bool) -> nn.Module:
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    from distil.data.tokens import is_tokens

    if is_tokens(example):
        mode = "qat" if qat else "static"
        raise QuantizeError(f"int8 ({mode}): {type(model).__name__} reads token ids, and torch.ao {mode} quantization observes float inputs; "
                            "use mode dynamic (int8 Linear and LSTM weights) or the onnx-int8 step")  # fmt: skip

    model = copy.deepcopy(model).cpu()
    model = model.train() if qat else model.eval()
    mapping = (get_default_qat_qconfig_mapping if qat else get_default_qconfig_mapping)(_backend(backend))
    try:
        return (prepare_qat_fx if qat else prepare_fx)(model, mapping, (example[:1].cpu(),))
    except Exception as err:  # symbolic tracing fails with many error types on data-dependent code
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise QuantizeError(f"int8 (static, FX): {type(model).__name__} cannot be traced by torch.fx ({first}); use mode dynamic, or ONNX Runtime int8") from None


def unquantized_layers(model: nn.Module) -> list[str]:
    """Conv/linear layers of a converted model still running in fp32 (the quantizer did not take them)."""
    return [name for name, m in model.named_modules() if type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)]


def static_int8(model: nn.Module, calibration: torch.Tensor, *, backend: str = "x86", batch_size: int = 256, strict: bool = True) -> nn.Module:
    """Post-training static int8 of a float model, calibrated on ``calibration`` inputs (a copy; ``model`` is untouched).

    With ``strict`` every conv/linear layer must end up int8; otherwise a :class:`QuantizeError` names
    the ones left in fp32. With ``strict=False`` they stay fp32 and the model is returned as it is.
    """
    with _quiet():
        prepared = _prepare(model, calibration, backend, qat=False)
        with torch.no_grad():
            for i in range(0, len(calibration), batch_size):
                prepared(calibration[i : i + batch_size].cpu())
        return convert(prepared, strict=strict)


def prepare_qat(model: nn.Module, example: torch.Tensor, *, backend: str = "x86") -> nn.Module:
    """A copy of ``model`` with fake quantization, to be trained (any objective) and then :func:`convert`-ed."""
    with _quiet():
        return _prepare(model, example, backend, qat=True)


def convert(prepared: nn.Module, *, strict: bool = True) -> nn.Module:
    """The int8 model of a calibrated or QAT-trained prepared model."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet():
        quantized = convert_fx(copy.deepcopy(prepared).cpu().eval())
    left = unquantized_layers(quantized)
    if strict and left:
        raise QuantizeError(f"int8 (static): layers the quantizer cannot handle stay fp32: {', '.join(left)}; set on_error: skip to keep them fp32 and go on")
    return quantized


#: The layers dynamic int8 quantizes: weights int8, activations quantized per call.
DYNAMIC_LAYERS = (nn.Linear, nn.LSTM)


def dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 of the Linear and LSTM layers (a copy); convolutions and embeddings stay fp32."""
    from torch.ao.quantization import quantize_dynamic

    if not any(isinstance(m, DYNAMIC_LAYERS) for m in model.modules()):
        raise QuantizeError(f"int8 (dynamic): {type(model).__name__} has no Linear or LSTM layer; dynamic quantization only takes those, use mode static")
    with _quiet():
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), set(DYNAMIC_LAYERS), dtype=torch.qint8)


def int8_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state of a quantized model as plain tensors (int8 values, scales, zero points) for safetensors.

    Quantized tensors become ``name.int8`` + ``name.scale`` + ``name.zero_point`` (per channel or per
    tensor); packed parameters (Linear, and the cells of a dynamic int8 LSTM) are unpacked; dtypes and
    other non-tensors are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()  # a packed LSTM cell holds its biases twice

    def add(name: str, value: object) -> None:
        if isinstance(value, torch.Tensor):
            if not value.is_quantized:
                key = (value.data_ptr(), tuple(value.shape))
                if value.numel() and key in seen:
                    return
                seen.add(key)
            if value.is_quantized:
                out[f"{name}.int8"] = value.int_repr()
                if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                    out[f"{name}.scale"] = value.q_per_channel_scales().float()
                    out[f"{name}.zero_point"] = value.q_per_channel_zero_points()
                else:
                    out[f"{name}.scale"] = torch.tensor([value.q_scale()], dtype=torch.float32)
                    out[f"{name}.zero_point"] = torch.tensor([value.q_zero_point()])
            else:
                out[name] = value.detach()
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                add(f"{name}.{i}", v)
        elif isinstance(value, torch.ScriptObject) and hasattr(value, "__getstate__"):  # packed LSTM cells and their linear params
            add(name, value.__getstate__())

    for key, value in model.state_dict().items():
        add(key, value)
    return out
