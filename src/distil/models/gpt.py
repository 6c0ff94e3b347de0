"""``gpt``: a small causal Transformer decoder (GPT-2 layout) over token ids, with a KV cache for generation.

Radford et al. 2019 ("Language Models are Unsupervised Multitask Learners", GPT-2): pre-norm blocks
(Xiong et al. 2020, arXiv:2002.04745), learned positions, a final LayerNorm, and the output layer tied
to the token embedding (Press & Wolf 2017, arXiv:1608.05859)::

    h = embedding[x] + positions[0..L)  → dropout
    layers.N:  h = h + Drop(CausalAttn(LN(h)));  h = h + Drop(MLP(LN(h)))        (N = 0 .. depth−1)
    logits = LN(h) @ embeddingᵀ                                                  (B, L, vocab)

The output layer has no weight of its own (``F.linear`` with the embedding matrix), so the safetensors
file holds the shared matrix once. Position ``i`` attends to positions ``≤ i`` only (the causal mask of
``scaled_dot_product_attention``), so the logits at ``i`` are the distribution of token ``i + 1``.

:meth:`GPT.step` is the incremental form generation uses: ``step(ids, past) → (logits, past')`` where
``past`` holds each layer's keys and values ``(B, H, P, D/H)`` of the ``P`` tokens seen so far; the new
tokens take positions ``P ..`` and attend to the cache. A sequence may not be longer than ``max_length``
(the learned positions; by default the data's context length).

Taps: ``layers.N`` (the residual stream after block N, ``(B, L, D)``), ``norm`` (the final normed states).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from distil.errors import ModelError
from distil.models.checks import positive_int, probability
from distil.models.registry import register_model

INIT_STD = 0.02  # GPT-2's initializer_range
#: One layer's cached keys and values, each (B, H, P, D/H).
KeyValues = tuple[torch.Tensor, torch.Tensor]


def causal_mask(new: int, total: int, device: torch.device) -> torch.Tensor:
    """``(new, total)`` bool: the last ``new`` of ``total`` positions each see every position up to their own.

    Built from ``arange`` comparisons (not ``tril(diagonal=...)``) so that a traced ONNX graph keeps both sizes dynamic.
    """
    return torch.arange(total, device=device)[None, :] <= torch.arange(new, device=device)[:, None] + (total - new)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that can extend a cache of earlier keys and values."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, past: KeyValues | None = None) -> tuple[torch.Tensor, KeyValues]:
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        mask, causal = None, True
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            causal = False
            if length > 1:  # new tokens see the whole cache and the new tokens up to themselves
                mask = causal_mask(length, k.shape[2], x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, length, width)), (k, v)


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: ``norm1`` → ``attn`` → residual; ``norm2`` → ``mlp`` → residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(width, mlp_ratio * width), act=nn.GELU(), fc2=nn.Linear(mlp_ratio * width, width))
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, past: KeyValues | None = None) -> tuple[torch.Tensor, KeyValues]:
        attended, cache = self.attn(self.norm1(h), past)
        h = h + self.dropout(attended)
        return h + self.dropout(self.mlp(self.norm2(h))), cache


class GPT(nn.Module):
    """Token ids ``(B, L)`` → next-token logits ``(B, L, vocab_size)``; see the module docstring."""

    def __init__(self, vocab_size: int, width: int, depth: int, heads: int, mlp_ratio: int, dropout: float, max_length: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.embedding = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_length, width)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(DecoderBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x)[0]

    def step(self, ids: torch.Tensor, past: list[KeyValues] | None = None) -> tuple[torch.Tensor, list[KeyValues]]:
        """Logits of ``ids`` ``(B, L)`` given the cache ``past`` of the earlier tokens, and the extended cache."""
        start = 0 if past is None else past[0][0].shape[2]
        if start + ids.shape[1] > self.max_length:
            raise ModelError(f"gpt: a sequence of {start + ids.shape[1]} tokens is longer than max_length {self.max_length}")
        h = self.dropout(self.embedding(ids) + self.positions(torch.arange(start, start + ids.shape[1], device=ids.device)))
        caches = []
        for i, layer in enumerate(self.layers):
            h, cache = layer(h, None if past is None else past[i])
            caches.append(cache)
        return F.linear(self.norm(h), self.embedding.weight), caches


@register_model("gpt", "small causal Transformer decoder (GPT-2 layout, tied embeddings, KV cache); next-token logits for language modelling")
def gpt(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    width: int = 128,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: int = 4,
    dropout: float = 0.0,
    max_length: int | None = None,
) -> GPT:
    """A causal decoder: ``width``, ``depth``, ``heads`` (dividing ``width``), MLP ``mlp_ratio`` × width;
    ``max_length`` positions (default: the data's context length ``input_shape[-1]``); the vocabulary is
    the data's (``vocab_size``, else ``num_classes``)."""
    name = "gpt"
    vocab = vocab_size if vocab_size is not None else num_classes
    width, heads = positive_int(name, "width", width), positive_int(name, "heads", heads)
    if width % heads:
        raise ModelError(f"model 'gpt': width {width} is not divisible by heads {heads}")
    if num_classes != vocab:
        raise ModelError(f"model 'gpt' predicts the next token: num_classes ({num_classes}) must equal the vocabulary size ({vocab})")
    return GPT(
        positive_int(name, "vocab_size", vocab),
        width,
        positive_int(name, "depth", depth),
        heads,
        positive_int(name, "mlp_ratio", mlp_ratio),
        probability(name, "dropout", dropout),
        positive_int(name, "max_length", input_shape[-1] if max_length is None else max_length),
    )
