"""Inference backends: something that maps a batch to logits.

The batch is float32 ``(N, *input_shape)`` for tensor models, int64 token ids ``(N, L)`` (any ``L``)
for text models; logits are ``(N, K)``, or ``(N, L, K)`` for taggers. What the batch holds and how a
request becomes one is the model's input (:mod:`distil.serve.inputs`), not the backend's concern.

A backend is any object with ``name``, ``platform``, ``input_name`` and ``predict(x) -> logits``. Two ship: :class:`OnnxBackend` (onnxruntime, the default) and
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

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, ``(N, K)`` or ``(N, L, K)``) of the batch ``x``."""
        ...


class OnnxBackend:
    """An onnxruntime session on the CPU; the input's name, type and per-sample shape come from the graph.

    ``input_shape`` has -1 for a dynamic axis (the length of token ids); ``input_type`` is
    onnxruntime's, e.g. ``"tensor(float)"`` or ``"tensor(int64)"``.
    """

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
        self.input_type = inputs[0].type
        self.input_shape = tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in inputs[0].shape[1:])
        self.output_name = self.session.get_outputs()[0].name
        self.path = Path(path)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)


class TorchBackend:
    """A PyTorch module in eval mode, run under ``torch.inference_mode`` on the CPU."""

    name = "torch"
    platform = "pytorch_torchscript"  # the closest OIP platform name; parameters say "torch eager"
    input_name = "input"

    def __init__(self, model, input_shape: tuple[int, ...] = (), threads: int = 0) -> None:
        import torch

        self.model = model.eval().to("cpu")
        self.input_shape = tuple(input_shape)
        self._torch = torch
        if threads:
            torch.set_num_threads(threads)

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._torch.from_numpy(x)).numpy().astype(np.float32, copy=False)
