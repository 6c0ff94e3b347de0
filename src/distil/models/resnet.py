"""CIFAR-style residual networks (He et al., 2016, "Deep Residual Learning for Image Recognition",
arXiv:1512.03385, §4.2), as used in distillation benchmarks by RepDistiller (Tian et al., 2020,
"Contrastive Representation Distillation", arXiv:1910.10699).

    conv1, bn1, relu        3×3 stem, ``widths[0]`` channels, stride 1
    layer1, layer2, layer3  n basic blocks each (depth = 6n + 2), strides 1, 2, 2
    pool, flatten, fc       global average pool (any input size), linear classifier

A block's shortcut is the identity, or a 1×1 convolution + BN where the shape changes (option B of
the paper, as in RepDistiller), which gives RepDistiller's parameter counts: for 3×32×32 inputs and
100 classes resnet56 has 0.86M, resnet110 1.74M, resnet8x4 1.23M and resnet32x4 7.43M parameters.
The ``x4`` variants are RepDistiller's widths (32, 64, 128, 256): a 32-wide stem, stages 64/128/256.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from distil.errors import ModelError
from distil.models.checks import image_shape, positive_int, positive_ints
from distil.models.layers import conv3x3, init_weights
from distil.models.registry import register_model

#: The widths (stem, layer1, layer2, layer3) of the CIFAR ResNets of He et al. and of RepDistiller's x4.
WIDTHS = (16, 16, 32, 64)
WIDTHS_X4 = (32, 64, 128, 256)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a shortcut: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: stem ``conv1``/``bn1``/``relu``, stages ``layer1..layer3``, ``pool``, ``flatten``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 20, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        stem, *stages = widths
        self.conv1 = conv3x3(in_channels, stem)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        channels = stem
        for i, (width, stride) in enumerate(zip(stages, (1, 2, 2), strict=True), start=1):
            layer = [BasicBlock(channels if b == 0 else width, width, stride if b == 0 else 1) for b in range(blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            channels = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


def resnet_depth(name: str, depth: object) -> int:
    """``depth`` checked to be 6n + 2 with n ≥ 1 (8, 14, 20, 32, 44, 56, 110, …)."""
    depth = positive_int(name, "depth", depth)
    if depth < 8 or (depth - 2) % 6:
        below = max(8, depth - (depth - 2) % 6)
        raise ModelError(
            f"model {name!r}: depth must be 6n+2 with n ≥ 1 (8, 14, 20, 32, 44, 56, 110, …), got {depth}; nearest: {below}, {below + 6}"
        )
    return depth


def resnet_widths(name: str, widths: object) -> tuple[int, int, int, int]:
    """``widths`` as (stem, layer1, layer2, layer3); a 3-tuple means a stem as wide as layer1."""
    w = positive_ints(name, "widths", widths)
    if len(w) == 3:
        return (w[0], w[0], w[1], w[2])
    if len(w) != 4:
        raise ModelError(f"model {name!r}: widths must be (stem, layer1, layer2, layer3) or (layer1, layer2, layer3), got {w}")
    return (w[0], w[1], w[2], w[3])


@register_model("resnet", "CIFAR ResNet (He et al. 2016) of any depth=6n+2 (default 20) and widths=(stem, l1, l2, l3)")
def resnet(*, input_shape: tuple[int, ...], num_classes: int, depth: int = 20, widths: Sequence[int] = WIDTHS) -> ResNet:
    """CIFAR ResNet with basic blocks: ``depth`` = 6n + 2, ``widths`` = (stem, layer1, layer2, layer3)."""
    c, _, _ = image_shape("resnet", input_shape)
    return ResNet(c, num_classes, resnet_depth("resnet", depth), resnet_widths("resnet", widths))


def _preset(name: str, depth: int, widths: tuple[int, int, int, int]) -> None:
    """Register ``name`` as the fixed-architecture ResNet (depth, widths); it takes no other arguments."""

    def factory(*, input_shape: tuple[int, ...], num_classes: int) -> ResNet:
        c, _, _ = image_shape(name, input_shape)
        return ResNet(c, num_classes, depth, widths)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"CIFAR ResNet-{depth} with widths {widths} (stem, layer1, layer2, layer3)."
    stages = "/".join(map(str, widths[1:]))
    suffix = ", RepDistiller's 4× wide variant" if widths == WIDTHS_X4 else ""
    register_model(name, f"CIFAR ResNet-{depth} (He et al. 2016), basic blocks, widths {stages}{suffix}")(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _preset(f"resnet{_depth}", _depth, WIDTHS)
for _depth in (8, 32):
    _preset(f"resnet{_depth}x4", _depth, WIDTHS_X4)
