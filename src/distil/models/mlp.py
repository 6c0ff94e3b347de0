"""A multilayer perceptron: the smallest baseline, and a student for any input shape.

Flatten → ``layer1..layerK`` (each ``Linear → ReLU → Dropout``) → ``fc``. The hidden layers are the
"hint" layers of FitNets (Romero et al., 2015, arXiv:1412.6550) when an MLP is a student; each is a
named submodule so a forward hook on ``layerK`` sees its activation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from distil.models.checks import positive_ints, probability
from distil.models.registry import register_model


class MLP(nn.Sequential):
    """Fully connected network: ``flatten``, ``layer1..layerK`` (Linear-ReLU-Dropout), ``fc``."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layer = OrderedDict([("linear", nn.Linear(width, h)), ("relu", nn.ReLU())])
            if dropout > 0:
                layer["dropout"] = nn.Dropout(dropout)
            layers[f"layer{i}"] = nn.Sequential(layer)
            width = h
        layers["fc"] = nn.Linear(width, num_classes)
        super().__init__(layers)


@register_model("mlp", "MLP: flatten → hidden Linear-ReLU layers (hidden=(256, 256), dropout=0.0) → fc; any input shape")
def mlp(*, input_shape: tuple[int, ...], num_classes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> MLP:
    """Multilayer perceptron over the flattened input (any ``input_shape``)."""
    hidden = positive_ints("mlp", "hidden", hidden, allow_empty=True)
    dropout = probability("mlp", "dropout", dropout)
    return MLP(math.prod(input_shape), num_classes, hidden, dropout)
