"""Keyword-spotting students on log-mel spectrograms ``(1, n_mels, frames)``: DS-CNN and TC-ResNet.

The teacher is the plain 2-D ``cnn`` (:mod:`distil.models.cnn`) on the same one-channel "image".

**DS-CNN** — Zhang, Suda, Lai & Chandra 2017, "Hello Edge: Keyword Spotting on Microcontrollers"
(arXiv:1711.07128), §3 and Table 5: a regular convolution (10 frames × 4 bands, stride 2) then
depthwise-separable blocks (Howard et al. 2017, MobileNets: a 3×3 depthwise convolution → BN → ReLU,
then a 1×1 pointwise one → BN → ReLU), global average pooling and one linear layer. DS-CNN-S is
``channels=64, blocks=4``; -M ``172, 4``; -L ``276, 5``. Here the kernel is written (bands, frames)
= (4, 10) because our spectrograms are (frequency, time). Modules: ``stem``, ``block1..blockK``,
``pool``, ``flatten``, ``dropout``, ``fc``.

**TC-ResNet** — Choi, Seo, Shin, Byun, Kersner, Kim, Kim & Ha 2019, "Temporal Convolution for
Real-time Keyword Spotting on Mobile Devices" (arXiv:1904.03814), §3 and Fig. 2: the ``n_mels``
bands are the *channels* of a 1-D convolution over time, so every layer sees the whole spectrum
and the network is shallow and fast. A 3-tap convolution to ``16·k`` channels, then residual blocks
(9-tap conv, stride s → BN → ReLU → 9-tap conv → BN, plus a 1×1 stride-s conv → BN → ReLU shortcut
when the shape changes; ReLU after the sum) of ``24·k, 32·k, 48·k`` channels, stride 2 each;
TC-ResNet8 has one block per width (66k parameters at k = 1, 12 classes), TC-ResNet14 two (the
second of stride 1). Modules: ``stem``, ``stage1..stage3`` (the blocks of each width), ``pool``,
``flatten``, ``dropout``, ``fc``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from distil.models.checks import image_shape, positive_float, positive_int, positive_ints, probability
from distil.models.layers import add_classifier_head, init_weights
from distil.models.registry import register_model


def _separable(channels: int) -> nn.Sequential:
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN → ReLU (MobileNets' block, as Hello Edge's DS-CNN)."""
    return nn.Sequential(
        OrderedDict(
            depthwise=nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            bn1=nn.BatchNorm2d(channels),
            relu1=nn.ReLU(),
            pointwise=nn.Conv2d(channels, channels, 1, bias=False),
            bn2=nn.BatchNorm2d(channels),
            relu2=nn.ReLU(),
        )
    )


class DSCNN(nn.Sequential):
    """``stem`` (conv (4, 10), stride 2 → BN → ReLU), ``block1..blockK`` (depthwise-separable), ``pool``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 64, blocks: int = 4, dropout: float = 0.0) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, channels, kernel_size=(4, 10), stride=2, padding=(1, 4), bias=False),
                bn=nn.BatchNorm2d(channels),
                relu=nn.ReLU(),
            )
        )
        for b in range(1, blocks + 1):
            layers[f"block{b}"] = _separable(channels)
        add_classifier_head(layers, nn.AdaptiveAvgPool2d(1), channels, num_classes, dropout)
        super().__init__(layers)
        init_weights(self)


@register_model("ds_cnn", "DS-CNN (Zhang et al. 2017, Hello Edge) on log-mel: conv (4×10)/2, depthwise-separable blocks, channels=64, blocks=4")
def ds_cnn(*, input_shape: tuple[int, ...], num_classes: int, channels: int = 64, blocks: int = 4, dropout: float = 0.0) -> DSCNN:
    """DS-CNN for spectrograms (C, frequency, time); DS-CNN-S by default (see the module docstring)."""
    c, _, _ = image_shape("ds_cnn", input_shape)
    return DSCNN(c, num_classes, positive_int("ds_cnn", "channels", channels), positive_int("ds_cnn", "blocks", blocks), probability("ds_cnn", "dropout", dropout))


class TemporalBlock(nn.Module):
    """TC-ResNet's residual block: conv9/s → BN → ReLU → conv9 → BN, + shortcut (1×1/s → BN → ReLU when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 9, stride=stride, padding=4, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(out_channels, out_channels, 9, padding=4, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm1d(out_channels), nn.ReLU())
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class Bands(nn.Module):
    """``(N, C, bands, frames)`` → ``(N, C·bands, frames)``: the mel bands become the channels of a 1-D convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1, 2)


class TCResNet(nn.Sequential):
    """``bands``, ``stem`` (conv3 → BN → ReLU), ``stage1..stageK``, ``pool``, ``fc`` (see the module docstring)."""

    def __init__(self, bands: int, num_classes: int, widths: Sequence[int], blocks_per_stage: int, stem: int, dropout: float) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["bands"] = Bands()
        layers["stem"] = nn.Sequential(
            OrderedDict(conv=nn.Conv1d(bands, stem, 3, padding=1, bias=False), bn=nn.BatchNorm1d(stem), relu=nn.ReLU())
        )
        channels = stem
        for s, width in enumerate(widths, start=1):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for b in range(blocks_per_stage):
                blocks[f"block{b + 1}"] = TemporalBlock(channels, width, stride=2 if b == 0 else 1)
                channels = width
            layers[f"stage{s}"] = nn.Sequential(blocks)
        add_classifier_head(layers, nn.AdaptiveAvgPool1d(1), channels, num_classes, dropout)
        super().__init__(layers)
        init_weights(self)


@register_model("tc_resnet", "TC-ResNet (Choi et al. 2019): mel bands as channels, 1-D residual temporal convs; TC-ResNet8 (blocks_per_stage=1, 2 → 14)")
def tc_resnet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: Sequence[int] = (24, 32, 48),
    blocks_per_stage: int = 1,
    width_mult: float = 1.0,
    stem: int = 16,
    dropout: float = 0.0,
) -> TCResNet:
    """TC-ResNet8 (``blocks_per_stage=1``) or -14 (``2``) at width multiplier ``k = width_mult``, for (C, bands, frames) inputs."""
    c, bands, _ = image_shape("tc_resnet", input_shape)
    k = positive_float("tc_resnet", "width_mult", width_mult)
    scaled = [max(1, round(w * k)) for w in positive_ints("tc_resnet", "widths", widths)]
    return TCResNet(
        c * bands,
        num_classes,
        scaled,
        positive_int("tc_resnet", "blocks_per_stage", blocks_per_stage),
        max(1, round(positive_int("tc_resnet", "stem", stem) * k)),
        probability("tc_resnet", "dropout", dropout),
    )
