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

    The session and the input's description are the compress package's (:func:`distil.compress.export.session`,
    :class:`~distil.compress.export.GraphInput`), shared with ``OnnxModel``. ``input_shape`` has -1
    for a dynamic axis (the length of token ids); ``input_type`` is onnxruntime's, e.g.
    ``"tensor(float)"`` or ``"tensor(int64)"`` (token ids). ``threads``: 0, onnxruntime's default.
    """

    name = "onnxruntime"
    platform = "onnxruntime_onnx"

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        from distil.compress.export import ExportError, graph_inputs, session

        try:
            self.session = session(path, threads)
        except ImportError:
            raise ModelError("serving an .onnx file needs onnxruntime: pip install onnxruntime") from None
        except ExportError as err:  # a file onnxruntime cannot load
            raise ModelError(str(err)) from None
        inputs = graph_inputs(self.session)
        if len(inputs) != 1:
            raise ModelError(f"{path}: the model has {len(inputs)} inputs; distil serves models with one input")
        self.graph_input = inputs[0]
        self.input_name = self.graph_input.name
        self.input_type = self.graph_input.type
        self.input_shape = self.graph_input.shape
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
