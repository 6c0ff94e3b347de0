"""MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381), adapted to small images.

The network is the paper's Table 2: a 32-channel 3×3 stem, seven stages of inverted residual
blocks (1×1 expansion → 3×3 depthwise → linear 1×1 projection, with a residual connection when
the shape is unchanged), a 1×1 head to 1280 channels, global average pooling and a linear
classifier. Channel counts are multiplied by ``width_mult`` and rounded to multiples of 8; the head
stays at 1280 unless ``width_mult > 1``.

Downsampling rule for small inputs. The paper reduces a 224×224 input 32× (a stride-2 stem and
four stride-2 stages). Here, with ``side`` the smaller input side:

* the stem has stride 2 only when ``side >= 64``, otherwise stride 1 (so 28×28 and 32×32 inputs
  are downsampled 16×, to 2×2, as is usual for CIFAR);
* a stage that the paper starts with stride 2 keeps it only while the feature map is at least 2
  on its smaller side, so the network never downsamples below 1×1 (an 8×8 input goes
  8 → 4 → 2 → 1 and the last stride-2 stage runs at stride 1).

Module names: ``stem``, ``stage1..stage7`` (each an ``nn.Sequential`` of blocks), ``head``,
``pool``, ``flatten``, [``dropout``], ``fc``; inside a block ``expand``, ``depthwise``, ``project``.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from distil.models.checks import image_shape, positive_float, probability
from distil.models.layers import init_weights
from distil.models.registry import register_model

#: The paper's Table 2: expansion t, output channels c, blocks n, first stride s of each stage.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never below ``divisor`` or 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """``conv`` → ``bn`` → ``relu`` (ReLU6), padded to keep the size at stride 1."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_channels),
            relu=nn.ReLU6(),
        )
    )


class InvertedResidual(nn.Module):
    """``expand`` (1×1, ×t, skipped when t = 1) → ``depthwise`` (3×3) → ``project`` (linear 1×1) [+ x]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = conv_bn_relu6(in_channels, hidden, kernel_size=1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden)
        self.project = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(hidden, out_channels, 1, bias=False), bn=nn.BatchNorm2d(out_channels))
        )
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileNetV2(nn.Sequential):
    """MobileNetV2 with the small-input downsampling rule of this module's docstring."""

    def __init__(self, in_channels: int, side: int, num_classes: int, width_mult: float = 1.0, dropout: float = 0.0) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        stem_stride = 2 if side >= 64 else 1
        channels = make_divisible(STEM_CHANNELS * width_mult)
        layers["stem"] = conv_bn_relu6(in_channels, channels, stride=stem_stride)
        side = -(-side // stem_stride)
        for i, (t, c, n, s) in enumerate(STAGES, start=1):
            stride = s if side >= 2 else 1
            side = -(-side // stride)  # a 3×3 conv with padding 1 and stride 2 gives ceil(side / 2)
            out = make_divisible(c * width_mult)
            blocks = [InvertedResidual(channels if b == 0 else out, out, stride if b == 0 else 1, t) for b in range(n)]
            layers[f"stage{i}"] = nn.Sequential(*blocks)
            channels = out
        head = make_divisible(HEAD_CHANNELS * max(1.0, width_mult))
        layers["head"] = conv_bn_relu6(channels, head, kernel_size=1)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        if dropout > 0:
            layers["dropout"] = nn.Dropout(dropout)
        layers["fc"] = nn.Linear(head, num_classes)
        super().__init__(layers)
        init_weights(self)


@register_model("mobilenetv2", "MobileNetV2 (Sandler et al. 2018), inverted residuals, width_mult=1.0; stride-1 stem below 64 px")
def mobilenetv2(*, input_shape: tuple[int, ...], num_classes: int, width_mult: float = 1.0, dropout: float = 0.0) -> MobileNetV2:
    """MobileNetV2 for small images: channels × ``width_mult``, ``dropout`` before the classifier."""
    c, h, w = image_shape("mobilenetv2", input_shape)
    width_mult = positive_float("mobilenetv2", "width_mult", width_mult)
    return MobileNetV2(c, min(h, w), num_classes, width_mult, probability("mobilenetv2", "dropout", dropout))
