"""Model architectures by name, and any ``nn.Module`` as ``"package.module:factory"``.

``build_model(name, input_shape=..., num_classes=..., **kwargs)`` builds a registered architecture
(``list_models()`` names them all: mlp, cnn, cnn1d, CIFAR ResNets, WideResNets, BiT's ResNet-v2 (GroupNorm + Weight Standardization), MobileNetV2; the
text students bilstm, lstm, textcnn, boe, text_transformer; the MiniLM teacher), a Hugging Face
folder (``"hf:PATH"``) or imports a user's factory. Every model takes only ``x`` in ``forward`` and returns logits of shape
``(N, num_classes)``; its stages are named submodules (``layer1..layer3`` for the residual
networks, ``stage1..stageK`` for ``cnn``/``cnn1d``/``mobilenetv2``, ``layer1..layerK`` for ``mlp``,
``fc`` for every classifier), so a forward hook on a module path taps a stage's output. No
activation is in-place, so a hook on any module (say a BN before its ReLU, for pre-activation
feature distillation) keeps that module's own output; this costs ~3% of a CPU training step.
Importing this package registers the built-in models; ``register_model`` adds one of your own.
"""

from distil.models.registry import MODELS, build_model, count_parameters, list_models, register_model

# Importing the modules runs their @register_model decorators (the order is that of `distil models`).
from distil.models import mlp  # noqa: F401  isort: skip
from distil.models import cnn  # noqa: F401  isort: skip
from distil.models import resnet  # noqa: F401  isort: skip
from distil.models import wrn  # noqa: F401  isort: skip
from distil.models import resnet_v2  # noqa: F401  isort: skip
from distil.models import mobilenetv2  # noqa: F401  isort: skip
from distil.models import audio  # noqa: F401  isort: skip
from distil.models import text_students  # noqa: F401  isort: skip
from distil.models import text_transformer  # noqa: F401  isort: skip
from distil.models import text_taggers  # noqa: F401  isort: skip
from distil.models import hf  # noqa: F401  isort: skip
from distil.models import gpt  # noqa: F401  isort: skip

__all__ = ["MODELS", "build_model", "count_parameters", "list_models", "register_model"]
