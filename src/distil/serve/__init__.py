"""``distil serve``: a distilled model behind the Open Inference Protocol v2 (KServe/Triton REST).

``load_models`` (repository.py) reads a run directory or an .onnx file; ``create_app`` (app.py)
serves the models with dynamic batching (batching.py), Prometheus metrics (metrics.py), a page for
people (page.py) and optional feedback capture into a transfer set (feedback.py). Backends
(backends.py): onnxruntime by default, PyTorch as the fallback. A model's input (inputs.py) is an
FP32 tensor or text: a text model's server tokenizes BYTES strings with the run's tokenizer.
Which row of a run is served, and the numbers it reports: selection.py. Model versions (the
promotions of ``distil loop``) and the hot swap: state.py and watch.py; corrections of captured
inputs: ``POST /feedback`` (feedback.py). Teachable mode: teachable.py and teachable_routes.py.
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
