"""``distil serve``: a distilled model behind the Open Inference Protocol v2 (KServe/Triton REST).

``load_models`` (repository.py) reads a run directory or an .onnx file; ``create_app`` (app.py)
serves the models with dynamic batching (batching.py), Prometheus metrics (metrics.py), a page for
people (page.py) and optional feedback capture into a transfer set (feedback.py). Backends
(backends.py): onnxruntime by default, PyTorch as the fallback.
"""

from distil.serve.app import ServeSettings, create_app
from distil.serve.batching import BatchSettings
from distil.serve.feedback import FeedbackWriter
from distil.serve.repository import ServedModel, load_models

__all__ = ["BatchSettings", "FeedbackWriter", "ServeSettings", "ServedModel", "create_app", "load_models"]
