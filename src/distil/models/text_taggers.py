"""Sequence taggers: a tag per token. ``bilstm_tagger`` (teacher), ``lstm_tagger``, ``cnn_tagger`` (students).

Each reads int64 token ids ``(B, L)``, right-padded with 0, and returns logits ``(B, L, num_classes)``,
one row per token; padding never changes the outputs at real tokens, so the engine may cut a batch to
its longest sentence. Layout: ``embedding`` (:class:`~distil.models.text_embedding.TokenEmbedding`,
kwargs as for the sentence students) → ``layers.i`` (per-token states ``(B, L, H)``, tap-able) →
``features`` (an ``nn.Identity`` on the last per-token states, a tap) → ``dropout`` → ``fc`` per token.
On tagging data a word's tag is read at its first piece (:mod:`distil.data.text.tagging`).

* ``bilstm_tagger`` — the classic neural POS tagger (Huang, Xu & Yu 2015, "Bidirectional LSTM-CRF
  Models for Sequence Tagging", arXiv:1508.01991, without the CRF; Plank, Søgaard & Goldberg 2016,
  arXiv:1604.05529): 2 BiLSTM layers of 200 units per direction over 200-d embeddings. The state at
  a token holds the whole sentence: left context from the forward LSTM, right from the backward one.
* ``lstm_tagger`` — one direction, left to right: what a streaming tagger can run (a tag as each
  token arrives). ``delay=d`` lets it read ``d`` tokens ahead before it tags a token: the output at
  token t comes from the state at token t + d (the sentence is followed by ``d`` padding tokens, whose
  embedding is zero), so a tag is emitted ``d`` tokens late — still one pass, one direction, but the
  next word is often what decides a part of speech ("that" as IN, DT or WDT), and a word's tag is
  read at its first piece, before its ending ("-ing", "-ly") has arrived.
* ``cnn_tagger`` — ``layers`` 1-D convolutions of width ``kernel`` ("same" padding, masked so padding
  reads as zeros), ReLU and a residual connection: each token sees ``layers·(kernel−1)/2`` tokens
  on each side (Collobert et al. 2011, "Natural Language Processing (Almost) from Scratch", JMLR).
* ``transformer_tagger`` is :func:`distil.models.text_transformer.text_transformer` with
  ``pooling: tokens``; ``hf:PATH``/``minilm`` on tagging data tag every token the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distil.errors import ModelError
from distil.models.checks import positive_int, probability
from distil.models.registry import register_model
from distil.models.text_embedding import PAD_ID, TokenEmbedding
from distil.models.text_students import LSTMLayer, student_embedding


def check_tagging(model: str, task: str | None) -> None:
    """A tagger needs data with a tag per word (``TextInfo.task == "tag"``)."""
    if task is not None and task != "tag":
        raise ModelError(
            f"model {model!r} tags every token, but the data have one label per text (task {task!r}); "
            "use a sentence classifier (bilstm, lstm, textcnn, boe, text_transformer) or tagging data (pos, tagged_text)"
        )


class RNNTagger(nn.Module):
    """``embedding`` → ``layers.i`` (LSTM, one or two directions) → ``features`` → ``dropout`` → ``fc`` per token.

    ``delay`` (one direction only): the output at token t is read from the state at t + delay.
    """

    def __init__(self, embedding: TokenEmbedding, num_classes: int, hidden_size: int, layers: int, bidirectional: bool, dropout: float, delay: int = 0) -> None:
        super().__init__()
        self.embedding = embedding
        self.delay = delay
        width = hidden_size * (2 if bidirectional else 1)
        self.layers = nn.ModuleList(LSTMLayer(embedding.embedding_dim if i == 0 else width, hidden_size, bidirectional) for i in range(layers))
        self.features = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[1]
        if self.delay:
            x = torch.nn.functional.pad(x, (0, self.delay), value=PAD_ID)
        lengths = (x != PAD_ID).sum(1).clamp(min=1)
        h = self.embedding(x)
        for layer in self.layers:
            h = layer(self.dropout(h), lengths)
        h = h[:, self.delay : self.delay + tokens]
        return self.fc(self.dropout(self.features(h)))


class ConvBlock(nn.Module):
    """``h + ReLU(conv(h))`` over the tokens, padding positions zeroed before the convolution."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.relu = nn.ReLU()

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = h * keep
        return h + self.relu(self.conv(h.transpose(1, 2)).transpose(1, 2))


class CNNTagger(nn.Module):
    """``embedding`` → ``project`` → ``layers.i`` (:class:`ConvBlock`) → ``features`` → ``dropout`` → ``fc`` per token."""

    def __init__(self, embedding: TokenEmbedding, num_classes: int, width: int, layers: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.project = nn.Linear(embedding.embedding_dim, width)
        self.layers = nn.ModuleList(ConvBlock(width, kernel) for _ in range(layers))
        self.features = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x != PAD_ID).unsqueeze(-1).to(self.fc.weight.dtype)
        h = self.dropout(self.project(self.embedding(x)))
        for layer in self.layers:
            h = layer(h, keep)
        return self.fc(self.dropout(self.features(h)))


def _rnn_tagger(name: str, args: dict[str, Any], bidirectional: bool) -> RNNTagger:
    check_tagging(name, args["task"])
    delay = args.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ModelError(f"model {name!r}: delay must be an integer ≥ 0 (tokens read ahead before a token is tagged), got {delay!r}")
    return RNNTagger(
        student_embedding(name, args),
        args["num_classes"],
        positive_int(name, "hidden_size", args["hidden_size"]),
        positive_int(name, "layers", args["layers"]),
        bidirectional,
        probability(name, "dropout", args["dropout"]),
        delay,
    )


@register_model("bilstm_tagger", "BiLSTM tagger (Huang et al. 2015 without CRF): 200-d embeddings, 2 layers × 200 units per direction, a tag per token; token ids")
def bilstm_tagger(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    task: str | None = None,
    embed_dim: int = 200,
    vocab: str = "data",
    min_count: int = 1,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    hidden_size: int = 200,
    layers: int = 2,
    dropout: float = 0.25,
) -> RNNTagger:
    """Bidirectional LSTM layers over token ids; logits for every token."""
    return _rnn_tagger("bilstm_tagger", locals(), bidirectional=True)


@register_model("lstm_tagger", "LSTM tagger, one direction: 200-d embeddings, 1 layer × 300 units, optional delay (tokens read ahead); token ids")
def lstm_tagger(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    task: str | None = None,
    embed_dim: int = 200,
    vocab: str = "data",
    min_count: int = 1,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    hidden_size: int = 300,
    layers: int = 1,
    dropout: float = 0.25,
    delay: int = 0,
) -> RNNTagger:
    """Left-to-right LSTM over token ids; the logits of token t from the state at t + ``delay``."""
    return _rnn_tagger("lstm_tagger", locals(), bidirectional=False)


@register_model("cnn_tagger", "CNN tagger (Collobert et al. 2011): 200-d embeddings, 3 residual convolutions of width 3 × 256 maps, a tag per token; token ids")
def cnn_tagger(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    task: str | None = None,
    embed_dim: int = 200,
    vocab: str = "data",
    min_count: int = 1,
    embedding_init: str = "random",
    freeze_embedding: bool = False,
    width: int = 256,
    layers: int = 3,
    kernel: int = 3,
    dropout: float = 0.25,
) -> CNNTagger:
    """Residual 1-D convolutions over token ids (odd ``kernel``); logits for every token."""
    check_tagging("cnn_tagger", task)
    kernel = positive_int("cnn_tagger", "kernel", kernel)
    if kernel % 2 == 0:
        raise ModelError(f"model 'cnn_tagger': kernel must be odd (a window centred on each token), got {kernel}")
    return CNNTagger(
        student_embedding("cnn_tagger", locals()),
        num_classes,
        positive_int("cnn_tagger", "width", width),
        positive_int("cnn_tagger", "layers", layers),
        kernel,
        probability("cnn_tagger", "dropout", dropout),
    )
