"""BiT's ResNet-v2: pre-activation residual networks with Group Normalization and Weight Standardization.

Kolesnikov, Beyer, Zhai, Puigcerver, Yung, Gelly & Houlsby 2020, "Big Transfer (BiT): General Visual
Representation Learning" (arXiv:1912.11370), §3.1: a ResNet-v2 (He et al. 2016, "Identity Mappings
in Deep Residual Networks", arXiv:1603.05027: BN → ReLU → conv, the shortcut added untouched) with
every BatchNorm replaced by GroupNorm (Wu & He 2018, arXiv:1803.08494) and every convolution's weight
standardized (Qiao et al. 2019, "Weight Standardization", arXiv:1903.10520):

    Ŵ[o] = (W[o] − mean(W[o])) / sqrt(var(W[o]) + ε)      per output channel o, over (in, kh, kw)

GN + WS need no batch statistics, so the network behaves the same at batch 1 and in eval mode as in
training, and large-batch pre-training transfers to small-batch fine-tuning (BiT's reason for them).
BiT uses bottleneck blocks at ImageNet scale; this zoo model uses the basic pre-activation block at
the CIFAR / 28×28 scale of the other residual models here:

    conv1                   3×3 standardized stem, ``widths[0]`` channels, stride 1 (no max-pool: small images)
    layer1, layer2, layer3  n blocks each (depth = 6n + 2), strides 1, 2, 2; a block is
                            ``conv2(relu(gn2(conv1(relu(gn1(x)))))) + shortcut``, the shortcut a 1×1
                            standardized convolution of the pre-activated input where the shape changes
    norm, relu              the final pre-activation
    pool, flatten, fc       global average pool (any input size), linear classifier (BiT zero-inits the
                            head it fine-tunes: see :mod:`distil.strategies.bit`)

GroupNorm uses ``groups`` groups (32, Wu & He's and BiT's default) where a layer has at least 4 channels
per group, fewer in narrow layers: ``gcd(channels, min(groups, channels // 4))`` (16 channels → 4
groups, 64 → 16, 128 → 32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distil.models.checks import image_shape, positive_int
from distil.models.registry import register_model
from distil.models.resnet import WIDTHS, resnet_depth, resnet_widths

#: channels per group below which a layer gets fewer groups than asked
MIN_GROUP_CHANNELS = 4


class StdConv2d(nn.Conv2d):
    """A convolution whose weight is standardized per output channel at every forward (Qiao et al. 2019)."""

    eps = 1e-10  # BiT's (big_transfer/bit_pytorch/models.py)

    def standardized_weight(self) -> Tensor:
        """``(W − mean) / sqrt(var + ε)`` over each output channel's (in, kh, kw), the biased variance."""
        w = self.weight
        var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


def std_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> StdConv2d:
    """Standardized convolution, "same" padding for odd kernels, no bias (a GroupNorm follows it)."""
    return StdConv2d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2, bias=False)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``groups`` groups, fewer where that would leave under 4 channels per group (see module doc)."""
    return nn.GroupNorm(math.gcd(channels, max(1, min(groups, channels // MIN_GROUP_CHANNELS))), channels)


class PreActBlock(nn.Module):
    """ResNet-v2 basic block: ``conv2(relu2(gn2(conv1(relu1(gn1(x)))))) + shortcut``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        self.gn1 = group_norm(in_channels, groups)
        self.relu1 = nn.ReLU()
        self.conv1 = std_conv(in_channels, out_channels, 3, stride)
        self.gn2 = group_norm(out_channels, groups)
        self.relu2 = nn.ReLU()
        self.conv2 = std_conv(out_channels, out_channels)
        self.project = stride != 1 or in_channels != out_channels
        self.shortcut = std_conv(in_channels, out_channels, 1, stride) if self.project else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.gn1(x))
        out = self.conv2(self.relu2(self.gn2(self.conv1(act))))
        # as in BiT: a projection reads the pre-activated input, the identity the raw one
        return out + self.shortcut(act if self.project else x)


class ResNetV2(nn.Module):
    """ResNet-v2 GN+WS: ``conv1``, ``layer1..layer3``, ``norm``, ``relu``, ``pool``, ``flatten``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 14, widths: Sequence[int] = WIDTHS, groups: int = 32) -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        stem, *stages = widths
        self.conv1 = std_conv(in_channels, stem)
        channels = stem
        for i, (width, stride) in enumerate(zip(stages, (1, 2, 2), strict=True), start=1):
            layer = [PreActBlock(channels if b == 0 else width, width, stride if b == 0 else 1, groups) for b in range(blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            channels = width
        self.norm = group_norm(channels, groups)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, StdConv2d):  # the scale is standardized away; He-normal as the other residual models
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(self.relu(self.norm(x)))))


@register_model("resnet_v2", "BiT ResNet-v2 (Kolesnikov 2020): pre-activation, GroupNorm + Weight Standardization; depth=6n+2 (default 14), widths, groups")
def resnet_v2(*, input_shape: tuple[int, ...], num_classes: int, depth: int = 14, widths: Sequence[int] = WIDTHS, groups: int = 32) -> ResNetV2:
    """BiT's ResNet-v2 with basic blocks: ``depth`` = 6n + 2, ``widths`` = (stem, layer1, layer2, layer3), GN ``groups``."""
    c, _, _ = image_shape("resnet_v2", input_shape)
    return ResNetV2(c, num_classes, resnet_depth("resnet_v2", depth), resnet_widths("resnet_v2", widths), positive_int("resnet_v2", "groups", groups))
