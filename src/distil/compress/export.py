"""ONNX: export a model as one file, run it in ONNX Runtime, check it against PyTorch, quantize it.

- :func:`export_onnx`: one self-contained ``.onnx`` file (``external_data=False``) with a dynamic batch
  dimension; the ``torch.export``-based exporter by default (``exporter="torchscript"`` for the legacy
  one, about 10× faster to export small models).
- :func:`parity`: the ONNX model and the PyTorch model on the same held-out inputs: max absolute
  difference of the logits and the fraction of equal argmaxes. :func:`check_parity` raises
  :class:`ParityError` past a tolerance.
- :func:`quantize_onnx`: ONNX Runtime static int8 (``quantize_static``) in QDQ or QOperator form,
  calibrated on training inputs through a :class:`CalibrationDataReader`.

Every file is written under a temporary name and renamed into place only once it has passed its
check, so a file in ``compressed/`` is always one that ran and matched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distil.errors import DistilError
from distil.weights import atomic_write

# The names `distil serve` advertises over the Open Inference Protocol: one name for every exported file.
INPUT, OUTPUT = "input", "logits"
EXPORTERS = ("dynamo", "torchscript")
FORMATS = ("qdq", "qoperator")


class ExportError(DistilError):
    """A model could not be exported, or the exported file does not run."""


class ParityError(DistilError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and warns about torchvision ops; distil reports its own result."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, exporter: str = "dynamo", opset: int = 18) -> Path:
    """Write ``model`` (eval mode, CPU, a copy) as one ONNX file with input ``x`` of shape (batch, *input_shape)."""
    import copy

    if exporter not in EXPORTERS:
        raise ExportError(f"onnx exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    example = (torch.randn(2, *input_shape),)

    def write(tmp: Path) -> None:
        with _quiet():
            if exporter == "dynamo":
                torch.onnx.export(model, example, str(tmp), dynamo=True, external_data=False, opset_version=opset, verbose=False,
                                  input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},))  # fmt: skip
            else:
                torch.onnx.export(model, example, str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})  # fmt: skip

    try:
        atomic_write(path, write)
    except DistilError:
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"onnx export ({exporter}) of {type(model).__name__} failed: {first}") from None
    return path


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; ``threads`` defaults to torch's, so both runtimes get the same cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(f"onnxruntime cannot load {path}: {str(err).splitlines()[0]}") from None


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call: tensors in, logits tensor out (CPU).

    It lets :mod:`distil.engine.evaluate` and :mod:`distil.engine.measure` treat a deployed file like
    any model, so every row of the table is measured by the same code.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])

    def __deepcopy__(self, memo: dict) -> OnnxModel:
        return self  # a session is immutable for inference and cannot be copied


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    argmax_agreement: float
    samples: int

    def as_dict(self) -> dict[str, float | int]:
        return {"max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement, "samples": self.samples}


def parity(reference: nn.Module, candidate: nn.Module, x: torch.Tensor, batch_size: int = 256) -> Parity:
    """Logits of ``candidate`` vs ``reference`` on ``x`` (both in eval mode, no grad, CPU)."""
    from distil.engine.evaluate import predict_logits

    x = x.cpu()
    ref = predict_logits(reference.cpu(), x, batch_size).float()
    out = predict_logits(candidate, x, batch_size).float()
    return Parity(
        max_abs_diff=float((ref - out).abs().max().item()),
        argmax_agreement=float((ref.argmax(1) == out.argmax(1)).float().mean().item()),
        samples=len(x),
    )


def check_parity(step: str, result: Parity, *, atol: float | None = None, min_agreement: float = 0.0) -> Parity:
    """Raise :class:`ParityError`, naming ``step``, if ``result`` is past either tolerance."""
    if atol is not None and not result.max_abs_diff <= atol:
        raise ParityError(f"{step}: parity check failed: max |onnxruntime − torch| = {result.max_abs_diff:.3g} > tolerance {atol:g} on {result.samples} held-out inputs")
    if not result.argmax_agreement >= min_agreement:
        raise ParityError(f"{step}: parity check failed: argmax agreement {result.argmax_agreement:.2%} < {min_agreement:.2%} on {result.samples} held-out inputs")
    return result


def quantize_onnx(source: str | Path, path: str | Path, calibration: torch.Tensor, *, fmt: str = "qdq", per_channel: bool = True, batch_size: int = 64) -> Path:
    """ONNX Runtime static int8 of ``source`` into ``path``: weights int8, activations uint8 (calibrated on ``calibration``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if fmt not in FORMATS:
        raise ExportError(f"onnx-int8 format {fmt!r} is not one of {', '.join(FORMATS)}")
    batches = [calibration[i : i + batch_size].cpu().float().contiguous().numpy() for i in range(0, len(calibration), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {INPUT: batch}

    path = Path(path)

    def write(tmp: Path) -> None:
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            with _quiet():
                quant_pre_process(str(source), str(prepared))
                quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                                per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)  # fmt: skip
        finally:
            prepared.unlink(missing_ok=True)

    try:
        atomic_write(path, write)
    except Exception as err:
        raise ExportError(f"onnx-int8: onnxruntime quantization of {Path(source).name} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return path
