"""Sequence-to-sequence models for translation: an LSTM encoder–decoder with attention here, and the
Transformer (:mod:`distil.models.seq2seq_transformer`); both give the interface of
:mod:`distil.models.seq2seq_encoded` (``encode``, ``decode`` with a state of tensors, batch on dim 1).

Luong, Pham & Manning 2015 ("Effective Approaches to Attention-based NMT"), global "general" attention,
without input feeding (so one decoder step needs only the previous token and the LSTM state — the
step :mod:`distil.compress` exports to ONNX):

* encoder: embeddings → LSTM (bidirectional for the teacher, one direction for the student, as in
  Kim & Rush 2016) → ``memory = W_m h_enc`` (``(B, S, H)``); the decoder's first state is
  ``h_0 = tanh(W_0 · mean_s h_enc)``, ``c_0 = 0``;
* decoder step: ``d_t = LSTM(emb(y_{t-1}), state)``; ``a_t = softmax_s(d_t · memory_s)`` over real source
  tokens; ``c_t = Σ_s a_ts memory_s``; ``h̃_t = tanh(W_c [c_t; d_t])``; ``logits_t = W_o h̃_t``.

The backward direction of a bidirectional encoder reads each sentence from its own last real token
(rows are reversed within their length), so padding never enters a real token's state and no packed
sequences are needed (the encoder exports to ONNX as plain tensors).

Models are built by name from :data:`SEQ2SEQ` (``distil`` configs: ``teacher.arch`` / ``student.arch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from distil.models.seq2seq_encoded import Encoded, State
from distil.models.seq2seq_transformer import TransformerSeq2Seq
from distil.models.text_embedding import PAD_ID

__all__ = ["SEQ2SEQ", "Encoded", "LstmSeq2Seq", "TransformerSeq2Seq", "reverse_within_length"]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row of ``x`` (``(B, L, ...)``) reversed within its first ``lengths[b]`` positions; the padding stays put."""
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    index = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class LstmSeq2Seq(nn.Module):
    """Attention encoder–decoder (see the module doc). ``forward(src, tgt_in)`` → logits ``(B, T, V)``."""

    #: The decoder state's tensors by name and their dynamic axes (the ONNX export's input names).
    state_axes: ClassVar[dict[str, dict[int, str]]] = {"h": {1: "batch"}, "c": {1: "batch"}}

    def __init__(
        self, src_vocab: int, tgt_vocab: int, *, embed: int = 128, hidden: int = 256, layers: int = 1,
        bidirectional: bool = True, dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.hidden, self.layers, self.bidirectional = hidden, layers, bidirectional
        self.src_embed = nn.Embedding(src_vocab, embed, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, embed, padding_idx=PAD_ID)
        per_direction = hidden // 2 if bidirectional else hidden
        self.encoder = nn.LSTM(embed, per_direction, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.encoder_back = nn.LSTM(embed, per_direction, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0) if bidirectional else None
        width = 2 * per_direction if bidirectional else per_direction
        self.memory = nn.Linear(width, hidden, bias=False)
        self.bridge = nn.Linear(width, hidden * layers)
        self.decoder = nn.LSTM(embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, tgt_vocab)
        self.drop = nn.Dropout(dropout)

    def encode(self, src: torch.Tensor) -> Encoded:
        mask = src != PAD_ID
        lengths = mask.sum(1).clamp_min(1)
        x = self.drop(self.src_embed(src))
        h, _ = self.encoder(x)
        if self.encoder_back is not None:
            back, _ = self.encoder_back(reverse_within_length(x, lengths))
            h = torch.cat([h, reverse_within_length(back, lengths)], dim=-1)
        h = h * mask.unsqueeze(-1)
        pooled = h.sum(1) / lengths.unsqueeze(1).to(h.dtype)
        h0 = torch.tanh(self.bridge(pooled)).view(-1, self.layers, self.hidden).transpose(0, 1).contiguous()
        return Encoded(self.memory(self.drop(h)), mask, (h0, torch.zeros_like(h0)))

    def decode(self, tgt_in: torch.Tensor, enc: Encoded, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``(B, T, V)`` for the target prefix ``tgt_in`` (``[BOS] y_1 …``) and the state after it."""
        d, state = self.decoder(self.drop(self.tgt_embed(tgt_in)), state if state is not None else enc.state)
        scores = torch.bmm(d, enc.memory.transpose(1, 2)).masked_fill(~enc.mask.unsqueeze(1), float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=-1), enc.memory)
        attended = torch.tanh(self.combine(torch.cat([context, d], dim=-1)))
        return self.out(self.drop(attended)), state

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src))[0]


#: arch name -> factory(src_vocab, tgt_vocab, **options).
SEQ2SEQ: dict[str, Callable[..., nn.Module]] = {
    "lstm_attention": LstmSeq2Seq,
    "transformer": TransformerSeq2Seq,
}
