"""distil: knowledge distillation for PyTorch — teacher → distil → table, from YAML or Python.

    from distil import build_model, distill, evaluate, load_dataset, losses
"""

from distil import losses
from distil.api import distill, evaluate, train
from distil.config import ExperimentConfig, load_config
from distil.data import BatchAugment, Dataset, Split, load_dataset
from distil.experiment import run_experiment
from distil.models import build_model, register_model

__version__ = "0.1.0"

__all__ = [
    "BatchAugment",
    "Dataset",
    "ExperimentConfig",
    "Split",
    "build_model",
    "distill",
    "evaluate",
    "load_config",
    "load_dataset",
    "losses",
    "register_model",
    "run_experiment",
    "train",
]
