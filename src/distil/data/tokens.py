"""Token batches: how text travels through distil's tensor-only engine.

A tokenized sentence is a row of int64 token ids, right-padded with :data:`PAD_ID` (0, the padding id
of BERT-family tokenizers and of every vocabulary distil builds). A split of N sentences is one
``(N, L)`` tensor, ``L`` the longest sentence kept (at most the tokenizer's ``max_length``), so the
trainer, the teacher cache and the view cache index text exactly as they index images; models find
their padding mask as ``x != PAD_ID``.

What differs from images is only cost: a batch is cut to its own longest sentence (:func:`trim`), and
training batches are drawn from buckets of similar length (:func:`bucketed_batches`) so that little
of a batch is padding. Inference and the teacher pass visit sentences in length order
(:func:`length_order`).
"""

from __future__ import annotations

import torch

#: The padding id of every token tensor in distil.
PAD_ID = 0

#: The label of a token that carries no tag in a tagging split (padding, [CLS]/[SEP], every piece of
#: a word but its first): cross-entropy's default ``ignore_index``.
IGNORE = -100

#: Batches per bucket when batches are grouped by length: large enough that sorting by length leaves
#: little padding, small enough that batches of different lengths still mix within an epoch.
BUCKET_BATCHES = 50


def is_tokens(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch of token ids (an integer tensor ``(N, L)``) rather than numeric inputs."""
    return x.dim() == 2 and not x.dtype.is_floating_point and x.dtype != torch.bool


def lengths(x: torch.Tensor) -> torch.Tensor:
    """Tokens per row of the right-padded id tensor ``x`` (int64 ``(N,)``)."""
    return (x != PAD_ID).sum(1)


def trim(x: torch.Tensor) -> torch.Tensor:
    """``x`` cut to its longest row (at least one column); any other tensor unchanged.

    A view, no copy. Padding columns add nothing to a masked model's output, only time.
    """
    if not is_tokens(x) or x.shape[1] == 0:
        return x
    used = int((x != PAD_ID).any(0).nonzero().max().item()) + 1 if bool((x != PAD_ID).any()) else 1
    return x[:, :used]


def length_order(x: torch.Tensor) -> torch.Tensor | None:
    """Row indices of ``x`` sorted by length (stable), or ``None`` when ``x`` is not tokens.

    Batches cut from this order are nearly free of padding; invert with ``order.argsort()``.
    """
    if not is_tokens(x):
        return None
    return torch.sort(lengths(x), stable=True).indices


def typical_row(x: torch.Tensor) -> int:
    """The row of median length (the lower median, ties by position): "a typical sentence" for timing."""
    return int(torch.sort(lengths(x), stable=True).indices[(len(x) - 1) // 2])


def bucketed_batches(permutation: torch.Tensor, row_lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Split ``permutation`` into batches of similar length, in random order.

    The shuffled indices are cut into buckets of :data:`BUCKET_BATCHES` batches, each bucket sorted by
    length and cut into batches; the batches of all buckets are then shuffled with ``generator``.
    Every index appears exactly once, as with ``permutation.split(batch_size)``.
    """
    bucket = batch_size * BUCKET_BATCHES
    batches: list[torch.Tensor] = []
    for part in permutation.split(bucket):
        ordered = part[torch.sort(row_lengths[part], stable=True).indices]
        batches.extend(ordered.split(batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def concat(parts: list[torch.Tensor]) -> torch.Tensor:
    """Rows of several splits in one tensor; token tensors are right-padded to the widest first.

    Two tokenized splits may have different widths (each is as wide as its longest sentence).
    """
    if not parts or not all(is_tokens(p) for p in parts):
        return torch.cat(parts)
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=PAD_ID) for p in parts])


def token_positions(x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """bool ``(B, L)``: the positions a per-token term reads — the tagged ones (``target != IGNORE``)
    when per-token labels are given, else every real token (``x != PAD_ID``, e.g. an unlabeled transfer set)."""
    if target is not None and target.dim() == 2:
        return target[:, : x.shape[1]] != IGNORE
    return x != PAD_ID


def pad_to(parts: list[torch.Tensor], width: int) -> list[torch.Tensor]:
    """Per-token outputs ``(b, l_i, ...)`` of batches cut to different lengths, padded with zeros to ``width`` tokens."""
    return [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1])) for p in parts]
