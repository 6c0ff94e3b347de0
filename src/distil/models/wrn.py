"""Wide residual networks (Zagoruyko & Komodakis, 2016, "Wide Residual Networks", arXiv:1605.07146).

WRN-d-k: pre-activation basic blocks (BN → ReLU → conv3, twice, dropout between the convolutions),
stage widths 16k, 32k, 64k, depth d = 6n + 4 (n blocks per stage):

    conv1                   3×3 stem, 16 channels
    layer1, layer2, layer3  n blocks each, strides 1, 2, 2
    bn, relu                the final pre-activation's BN and ReLU
    pool, flatten, fc       global average pool (any input size), linear classifier

Where a block changes the shape, its shortcut is a 1×1 convolution of the pre-activated input (as in
the paper's code and RepDistiller). For 3×32×32 inputs and 100 classes wrn_40_2 has 2.25M and
wrn_16_2 0.70M parameters. The stages are named ``layer1..layer3`` like the ResNets' (the paper's
code calls them ``block1..block3``) so the same hook paths work for both families.
"""

from __future__ import annotations

from torch import Tensor, nn

from distil.errors import ModelError
from distil.models.checks import image_shape, positive_int, probability
from distil.models.layers import conv3x3, init_weights
from distil.models.registry import register_model


class WideBlock(nn.Module):
    """Pre-activation block: ``conv2(dropout(relu2(bn2(conv1(relu1(bn1(x))))))) + shortcut``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.equal = in_channels == out_channels and stride == 1
        self.shortcut = nn.Identity() if self.equal else nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(act)))))
        # the identity shortcut carries the raw input; a projection reads the pre-activated one
        return out + self.shortcut(x if self.equal else act)


class WideResNet(nn.Module):
    """WRN-depth-width: ``conv1``, ``layer1..layer3``, ``bn``, ``relu``, ``pool``, ``flatten``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 16, width: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        blocks = (depth - 4) // 6
        channels = 16
        self.conv1 = conv3x3(in_channels, channels)
        for i, (base, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            out = base * width
            layer = [WideBlock(channels if b == 0 else out, out, stride if b == 0 else 1, dropout) for b in range(blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            channels = out
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(self.flatten(self.pool(self.relu(self.bn(x)))))


def wrn_depth(name: str, depth: object) -> int:
    """``depth`` checked to be 6n + 4 with n ≥ 1 (10, 16, 22, 28, 40, …)."""
    depth = positive_int(name, "depth", depth)
    if depth < 10 or (depth - 4) % 6:
        below = max(10, depth - (depth - 4) % 6)
        raise ModelError(
            f"model {name!r}: depth must be 6n+4 with n ≥ 1 (10, 16, 22, 28, 40, …), got {depth}; nearest: {below}, {below + 6}"
        )
    return depth


@register_model("wrn", "WideResNet (Zagoruyko & Komodakis 2016) WRN-depth-width: depth=6n+4 (default 16), width=1, dropout=0.0")
def wrn(*, input_shape: tuple[int, ...], num_classes: int, depth: int = 16, width: int = 1, dropout: float = 0.0) -> WideResNet:
    """WideResNet WRN-``depth``-``width`` with ``dropout`` between each block's convolutions."""
    c, _, _ = image_shape("wrn", input_shape)
    return WideResNet(c, num_classes, wrn_depth("wrn", depth), positive_int("wrn", "width", width), probability("wrn", "dropout", dropout))


def _preset(depth: int, width: int) -> None:
    """Register ``wrn_{depth}_{width}``; it takes only ``dropout``."""
    name = f"wrn_{depth}_{width}"

    def factory(*, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0) -> WideResNet:
        c, _, _ = image_shape(name, input_shape)
        return WideResNet(c, num_classes, depth, width, probability(name, "dropout", dropout))

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"WideResNet WRN-{depth}-{width}."
    widths = f"{16 * width}/{32 * width}/{64 * width}"
    register_model(name, f"WideResNet WRN-{depth}-{width} (Zagoruyko & Komodakis 2016), widths {widths}; dropout=0.0")(factory)


for _depth, _width in ((16, 1), (16, 2), (40, 1), (40, 2)):
    _preset(_depth, _width)
