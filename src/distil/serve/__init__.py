"""``distil serve``: a distilled model behind the Open Inference Protocol v2 (KServe/Triton REST).

``load_models`` (repository.py) reads a run directory or an .onnx file; ``create_app`` (app.py)
serves the models with dynamic batching (batching.py), Prometheus metrics (metrics.py), a page for
people (page.py) and optional feedback capture into a transfer set (feedback.py). Backends
(backends.py): onnxruntime by default, PyTorch as the fallback. A model's input (inputs.py) is an
FP32 tensor or text: a text model's server tokenizes BYTES strings with the run's tokenizer.
"""

from distil.serve.app import ServeSettings, create_app
from distil.serve.batching import BatchSettings
from distil.serve.feedback import FeedbackWriter, TextFeedbackWriter, feedback_writer
from distil.serve.inputs import Batch, TensorInput, TextInput
from distil.serve.repository import ServedModel, load_models

__all__ = [
    "Batch",
    "BatchSettings",
    "FeedbackWriter",
    "ServeSettings",
    "ServedModel",
    "TensorInput",
    "TextFeedbackWriter",
    "TextInput",
    "create_app",
    "feedback_writer",
    "load_models",
]
