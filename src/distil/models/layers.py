"""Building blocks shared by the convolutional models: the 3×3 convolution and weight initialisation."""

from __future__ import annotations

from collections.abc import MutableMapping

from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias (a BatchNorm follows it)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def init_weights(model: nn.Module) -> None:
    """He-normal convolutions (He et al., 2015, arXiv:1502.01852, fan-out mode), BN γ=1 β=0, zero linear bias.

    The initialisation of the CIFAR ResNets of He et al. (2016) and of RepDistiller's models.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def add_classifier_head(layers: MutableMapping[str, nn.Module], pool: nn.Module, channels: int, num_classes: int, dropout: float = 0.0) -> None:
    """The zoo's classifier head, appended to ``layers``: ``pool`` → ``flatten`` → ``dropout`` (when > 0) → ``fc``.
    The names are the taps every method and connector reads (``pool``, ``fc:input``, ``fc``)."""
    layers["pool"] = pool
    layers["flatten"] = nn.Flatten()
    if dropout > 0:
        layers["dropout"] = nn.Dropout(dropout)
    layers["fc"] = nn.Linear(channels, num_classes)
