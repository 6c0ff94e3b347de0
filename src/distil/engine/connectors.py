"""Connectors: small trainable maps that bring a student feature to the teacher feature's shape.

FitNets (Romero et al. 2015) call it the regressor. Built from the shapes one probe batch shows:
feature maps get a 1×1 convolution + BatchNorm (and pooling or interpolation when the spatial sizes
differ), vectors a linear layer. Connectors train with the student and are saved with the run, but
are not part of the student that is exported.

Text features (:func:`build_token_connector`) have an axis whose size is the batch's length, which the
trainer changes from batch to batch, so no connector may depend on it: hidden states (B, L, D) get a
linear map of the last dimension (TinyBERT's W_h, Jiao et al. 2020), attention maps (B, H, L, L) none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Resize(nn.Module):
    """Average-pool down or bilinear-interpolate up to a fixed spatial size."""

    def __init__(self, size: tuple[int, ...]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) == self.size:
            return x
        if all(s >= t for s, t in zip(x.shape[2:], self.size)):
            pool = F.adaptive_avg_pool2d if x.dim() == 4 else F.adaptive_avg_pool1d
            return pool(x, self.size)
        return F.interpolate(x, size=self.size, mode="bilinear" if x.dim() == 4 else "linear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


CONVS = {3: (nn.Conv1d, nn.BatchNorm1d), 4: (nn.Conv2d, nn.BatchNorm2d)}


def build_connector(student: torch.Size | tuple[int, ...], teacher: torch.Size | tuple[int, ...]) -> nn.Module:
    """A module mapping a batch of shape ``student`` to ``teacher``'s shape (batch dimension ignored).

    Raises ``ValueError`` saying why when no connector can bridge the two (different ranks).
    """
    s, t = tuple(student), tuple(teacher)
    if s[1:] == t[1:]:
        return nn.Identity()
    if len(s) != len(t):
        raise ValueError(f"student feature {s[1:]} and teacher feature {t[1:]} have different ranks; tap layers of the same kind (both feature maps or both vectors)")
    if len(s) == 2:
        return nn.Linear(s[1], t[1])
    if len(s) not in CONVS:
        raise ValueError(f"no connector for {len(s) - 1}-d features {s[1:]} → {t[1:]}; supported: vectors, (C, L) and (C, H, W)")
    conv, norm = CONVS[len(s)]
    layers: list[nn.Module] = [conv(s[1], t[1], kernel_size=1, bias=False), norm(t[1])]
    if s[2:] != t[2:]:
        layers.insert(0, Resize(t[2:]))
    return nn.Sequential(*layers)


def build_token_connector(
    student: torch.Size | tuple[int, ...], teacher: torch.Size | tuple[int, ...], student_axes: tuple[int, ...], teacher_axes: tuple[int, ...]
) -> nn.Module:
    """A module mapping a text feature of shape ``student`` to ``teacher``'s, whatever the batch's length.

    ``*_axes`` are the axes whose size follows the length of the token batch
    (:func:`distil.engine.taps.length_axes`): ``(1,)`` hidden states (B, L, D) → ``nn.Linear(D_s, D_t)``
    on the last dimension; ``(2,)`` convolution maps (B, C, L') → 1×1 Conv1d + BatchNorm (no resizing:
    L' changes per batch); ``(2, 3)`` attention maps (B, H, L, L) → none (a head count cannot be
    mapped; equal shapes need no connector); ``()`` features of a fixed shape → :func:`build_connector`.
    ``nn.Identity`` when the shapes are equal. Raises ``ValueError`` saying why when no connector fits.
    """
    s, t = tuple(student), tuple(teacher)
    if student_axes != teacher_axes:
        raise ValueError(
            f"student feature {s[1:]} ({_kind(s, student_axes)}) and teacher feature {t[1:]} ({_kind(t, teacher_axes)}) "
            "are different kinds; tap layers of the same kind (both hidden states, both attention maps or both vectors)"
        )
    if not student_axes:
        return build_connector(s, t)
    if s[1:] == t[1:]:
        return nn.Identity()
    kind = _kind(s, student_axes)
    if kind == "hidden states (L, D)":
        if s[1] != t[1]:
            raise ValueError(
                f"hidden states {s[1:]} and {t[1:]} have different numbers of positions for the same sentences "
                "(a [CLS] position on one side only?); use the same pooling on both models or compare pooled vectors"
            )
        return nn.Linear(s[2], t[2])
    if kind == "sequence maps (C, L)":
        if s[2] != t[2]:
            raise ValueError(
                f"sequence maps {s[1:]} and {t[1:]} have different lengths, and their length changes with every batch, "
                "so no fixed resize maps one onto the other; tap layers of the same filter width"
            )
        conv, norm = CONVS[3]
        return nn.Sequential(conv(s[1], t[1], kernel_size=1, bias=False), norm(t[1]))
    if kind == "attention maps (H, L, L)":
        if s[1] != t[1]:
            raise ValueError(
                f"attention maps with {s[1]} heads (student) and {t[1]} heads (teacher): no connector maps one head count "
                "to another; tap a teacher layer with as many heads, or compare hidden states"
            )
        raise ValueError(f"attention maps {s[1:]} and {t[1:]} cover different positions (a [CLS] position on one side only?)")
    raise ValueError(
        f"no connector for text features {s[1:]} → {t[1:]} whose axes {student_axes} follow the length; "
        "supported: hidden states (L, D), sequence maps (C, L), attention maps (H, L, L) and vectors"
    )


def _kind(shape: tuple[int, ...], axes: tuple[int, ...]) -> str:
    """What a text feature is, from its rank and the axes that follow the batch's length."""
    kinds = {(3, (1,)): "hidden states (L, D)", (3, (2,)): "sequence maps (C, L)", (4, (2, 3)): "attention maps (H, L, L)"}
    if not axes:
        return "vector" if len(shape) == 2 else "fixed shape"
    return kinds.get((len(shape), axes), f"length on axes {axes}")
