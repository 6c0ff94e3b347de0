"""Inference over in-memory tensors: logits and accuracy, in eval mode, batched, without autograd."""

from __future__ import annotations

import torch
from torch import nn

from distil.data.tokens import IGNORE, length_order, pad_to, trim

# Measured on a 2-core CPU (a 288k-parameter CNN on 28×28 inputs): batches of 256 in channels_last
# run about 2.5× faster than batches of 1024 in NCHW, which spill out of the caches.
INFERENCE_BATCH = 256


def use_channels_last(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Image models (4-D inputs) run faster in channels_last on CPU and GPU alike; values are unchanged."""
    return model.to(memory_format=torch.channels_last) if x.dim() == 4 else model


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Logits for every row of ``x``, computed in eval mode; the model's mode is restored afterwards.

    Under ``inference_mode`` (no autograd bookkeeping at all): the result is for reading, not for a
    loss to save for backward. Token inputs are visited in length order, each batch cut to its longest
    sentence (:mod:`distil.data.tokens`); the logits come back in the rows' order. A tagger's per-token
    logits ``(N, L, C)`` are padded with zeros to ``x``'s width ``L``, aligned with per-token labels.
    """
    was_training = model.training
    use_channels_last(model, x)
    model.eval()
    order = length_order(x)
    rows = x if order is None else x[order]
    try:
        with torch.inference_mode():
            parts = [model(trim(rows[i : i + batch_size])) for i in range(0, len(rows), batch_size)]
            logits = torch.cat(pad_to(parts, x.shape[1]) if parts[0].dim() == 3 else parts)
    finally:
        model.train(was_training)
    return logits if order is None else logits[order.argsort()]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> float:
    """Top-1 accuracy in [0, 1]; with a tag per token (``y`` ``(N, L)``), token accuracy over the tagged tokens."""
    if len(x) == 0:
        raise ValueError("accuracy of an empty split")
    correct, counted = hits(predict_logits(model, x, batch_size), y)
    if not counted:
        raise ValueError("accuracy of a split with no tagged token")
    return correct / counted


def hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) top-1 predictions of ``logits`` against ``y``: samples, or tagged tokens
    (``y != IGNORE``) of per-token logits."""
    keep = y != IGNORE
    correct = (logits.argmax(-1) == y) & keep
    return int(correct.sum()), int(keep.sum())
