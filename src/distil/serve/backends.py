"""Inference backends: something that maps a float32 batch ``(N, *input_shape)`` to logits ``(N, K)``.

A backend is any object with ``name``, ``platform``, ``input_name``, ``input_shape`` and
``predict(x) -> logits``. Two ship: :class:`OnnxBackend` (onnxruntime, the default) and
:class:`TorchBackend` (the PyTorch module itself, the fallback when there is no ONNX file and none
can be exported). ``predict`` is called from a worker thread, one batch at a time per model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from distil.errors import ModelError


@runtime_checkable
class Backend(Protocol):
    name: str  # what it runs on, e.g. "onnxruntime"
    platform: str  # the OIP model-metadata platform string
    input_name: str
    input_shape: tuple[int, ...]  # one sample's shape, without the batch axis

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, ``(N, K)``) of the float32 batch ``x`` of shape ``(N, *input_shape)``."""
        ...


class OnnxBackend:
    """An onnxruntime session on the CPU; the input's name and per-sample shape come from the graph."""

    name = "onnxruntime"
    platform = "onnxruntime_onnx"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("serving an .onnx file needs onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001  onnxruntime raises its own exception types for bad files
            raise ModelError(f"{path}: onnxruntime cannot load it ({err})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path}: the model has {len(inputs)} inputs; distil serves models with one input")
        self.input_name = inputs[0].name
        dims = inputs[0].shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise ModelError(f"{path}: input {self.input_name!r} has shape {inputs[0].shape}; every axis but the batch must be fixed")
        self.input_shape = tuple(int(d) for d in dims)
        self.output_name = self.session.get_outputs()[0].name
        self.path = Path(path)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)


class TorchBackend:
    """A PyTorch module in eval mode, run under ``torch.inference_mode`` on the CPU."""

    name = "torch"
    platform = "pytorch_torchscript"  # the closest OIP platform name; parameters say "torch eager"
    input_name = "input"

    def __init__(self, model, input_shape: tuple[int, ...], threads: int = 0) -> None:
        import torch

        self.model = model.eval().to("cpu")
        self.input_shape = tuple(input_shape)
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(x)).numpy().astype(np.float32, copy=False)
