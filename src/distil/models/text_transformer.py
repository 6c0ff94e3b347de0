"""``text_transformer``: a small pre-norm Transformer encoder over token ids, built to be tapped.

Vaswani et al., 2017 (arXiv:1706.03762) with the pre-norm residual blocks of Xiong et al., 2020
(arXiv:2002.04745) and BERT's learned positions (Devlin et al., 2019, arXiv:1810.04805)::

    embedding (+ project to width if embed_dim ≠ width) + positions → dropout
    layers.0 .. layers.{depth-1}:  h = h + Drop(Attn(LN(h)));  h = h + Drop(MLP(LN(h)))
    norm (final LayerNorm) → pooling (masked mean over real tokens, or a learned CLS vector) → features → fc
    (pooling "tokens": no pooling, ``fc`` on every token: a tagger, ``(B, L, num_classes)``; ``transformer_tagger``)

Defaults (width 256, depth 2, heads 4, MLP 4×) are between BERT-Tiny and BERT-Mini of Turc et al.,
2019 (arXiv:1908.08962): 3.1M parameters with vocab "data" on a 3,600-sentence MR split (1.5M of them embeddings).

Taps (module paths a forward hook reads; B batch, L tokens (+1 with CLS), D width, H heads):

* ``layers.N`` — the residual stream after block N, ``(B, L, D)`` (hidden states; before the final norm);
* ``layers.N.attn.probs`` — block N's attention probabilities ``(B, H, L, L)`` (an ``nn.Identity``
  applied to them before dropout; rows are queries, padded keys have probability 0);
* ``norm`` — the final normed states; ``features`` — the pooled sentence vector ``(B, D)``.

Padding is masked out of every attention and of the mean, so appending padding columns leaves the
logits unchanged (up to float rounding); sequences may not be longer than ``max_length``
(default: the data's ``input_shape[-1]``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from distil.errors import ModelError
from distil.models.checks import positive_int, probability
from distil.models.registry import register_model
from distil.models.text_embedding import PAD_ID, TokenEmbedding, make_embedding

INIT_STD = 0.02  # BERT's initializer_range, for linear layers, positions and random embedding rows
POOLINGS = ("mean", "cls", "tokens")


class SelfAttention(nn.Module):
    """Multi-head self-attention whose probabilities pass through ``probs`` (an ``nn.Identity``: a tap)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.probs = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x`` (B, L, D); ``keep`` (B, L) bool, the keys that may be attended to."""
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(width // self.heads)
        # The dtype's lowest finite value rather than -inf: a row with no real key stays finite (uniform).
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = self.probs(scores.softmax(-1))
        out = (self.dropout(probs) @ v).transpose(1, 2).reshape(b, length, width)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm Transformer block: ``norm1`` → ``attn`` → residual; ``norm2`` → ``mlp`` → residual."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(width, mlp_ratio * width), act=nn.GELU(), fc2=nn.Linear(mlp_ratio * width, width))
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = h + self.dropout(self.attn(self.norm1(h), keep))
        return h + self.dropout(self.mlp(self.norm2(h)))


class TextTransformer(nn.Module):
    """Token ids ``(B, L)`` → logits; see the module docstring for the layout and the taps."""

    def __init__(
        self,
        embedding: TokenEmbedding,
        num_classes: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: int,
        dropout: float,
        pooling: str,
        max_length: int,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.max_length = max_length
        self.embedding = embedding
        self.project = nn.Linear(embedding.embedding_dim, width) if embedding.embedding_dim != width else nn.Identity()
        self.cls = nn.Parameter(torch.zeros(1, 1, width)) if pooling == "cls" else None
        self.positions = nn.Embedding(max_length + (pooling == "cls"), width)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.features = nn.Identity()
        self.fc = nn.Linear(width, num_classes)
        self._init()

    def _init(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, INIT_STD)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.positions.weight, 0.0, INIT_STD)
        if self.cls is not None:
            nn.init.normal_(self.cls, 0.0, INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.max_length:
            raise ValueError(f"text_transformer: {x.shape[1]} tokens, longer than its max_length {self.max_length}")
        keep = x != PAD_ID
        h = self.project(self.embedding(x))
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(x), -1, -1), h], dim=1)
            keep = torch.cat([keep.new_ones(len(x), 1), keep], dim=1)
        h = self.dropout(h + self.positions.weight[: h.shape[1]])
        for layer in self.layers:
            h = layer(h, keep)
        h = self.norm(h)
        if self.pooling == "tokens":
            pooled = h
        elif self.cls is not None:
            pooled = h[:, 0]
        else:
            weights = keep.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.fc(self.features(pooled))


@register_model("text_transformer", "small pre-norm Transformer encoder (width 256, depth 2, 4 heads), attention probs tap-able; token ids")
def text_transformer(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    embed_dim: int | None = None,
    vocab: str = "data",
    min_count: int = 2,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    width: int = 256,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: int = 4,
    dropout: float = 0.1,
    pooling: str = "mean",
    max_length: int | None = None,
    task: str | None = None,
) -> TextTransformer:
    """Pre-norm Transformer encoder over token ids (``embed_dim`` defaults to ``width``; ``max_length`` to ``input_shape[-1]``)."""
    name = "text_transformer"
    if task == "tag" and pooling != "tokens":
        raise ModelError(f"model {name!r}: the data are tagged per word; use transformer_tagger (or pooling: tokens)")
    width = positive_int(name, "width", width)
    heads = positive_int(name, "heads", heads)
    if width % heads:
        raise ModelError(f"model {name!r}: width {width} must be a multiple of heads {heads}")
    if pooling not in POOLINGS:
        raise ModelError(f"model {name!r}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    embedding = make_embedding(
        name,
        vocab_size=vocab_size,
        token_counts=token_counts,
        tokenizer_dir=tokenizer_dir,
        embed_dim=width if embed_dim is None else embed_dim,
        vocab=vocab,
        min_count=min_count,
        embedding_init=embedding_init,
        freeze_embedding=freeze_embedding,
        init_std=INIT_STD,
    )
    return TextTransformer(
        embedding,
        num_classes,
        width,
        positive_int(name, "depth", depth),
        heads,
        positive_int(name, "mlp_ratio", mlp_ratio),
        probability(name, "dropout", dropout),
        pooling,
        positive_int(name, "max_length", input_shape[-1] if max_length is None else max_length),
    )


@register_model("transformer_tagger", "small pre-norm Transformer encoder (width 256, depth 2, 4 heads), a tag per token; token ids")
def transformer_tagger(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    task: str | None = None,
    embed_dim: int | None = None,
    vocab: str = "data",
    min_count: int = 1,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    width: int = 256,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: int = 4,
    dropout: float = 0.1,
    max_length: int | None = None,
) -> TextTransformer:
    """:func:`text_transformer` with ``pooling: tokens``: logits for every token ``(B, L, num_classes)``."""
    if task is not None and task != "tag":
        raise ModelError(f"model 'transformer_tagger' tags every token, but the data have one label per text (task {task!r}); use text_transformer")
    args = {k: v for k, v in locals().items() if k != "task"}
    return text_transformer(**args, pooling="tokens")
