"""``transformer``: a pre-norm Transformer encoder–decoder for translation, decoding with a key/value cache.

Vaswani et al. 2017 ("Attention Is All You Need", NeurIPS), with each sub-layer's LayerNorm moved before
it (pre-norm: Wang et al. 2019, arXiv:1906.01787; Xiong et al. 2020, arXiv:2002.04745 — needs less warm-up than
the post-norm model) and a final LayerNorm on each side::

    x = √d · E_src[src] + PE(0 .. S)                                 → dropout
    encoder layer:  x = x + Drop(SelfAttn(LN(x)))       keys: the real source tokens
                    x = x + Drop(FFN(LN(x)))
    memory = LN(x)
    y = √d · E_tgt[tgt_in] + PE(P .. P + T)                          → dropout
    decoder layer:  y = y + Drop(SelfAttn(LN(y)))       keys: target positions ≤ its own (causal)
                    y = y + Drop(CrossAttn(LN(y), memory))   keys: the real source tokens
                    y = y + Drop(FFN(LN(y)))
    logits = LN(y) · W_oᵀ + b        (W_o = E_tgt and no bias with ``tie_embeddings``: Press & Wolf 2017)

with ``Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V`` per head (§3.2.1; ``M`` is the most negative
float where a key is masked, so no row is ever all ``-inf``), ``h`` heads of width ``d_k = d / h``
concatenated and projected (§3.2.2), ``FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2`` (§3.3), dropout also on
the attention probabilities, and **sinusoidal** positions (§3.5, not learned):
``PE(p, 2i) = sin(p / 10000^{2i/d})``, ``PE(p, 2i+1) = cos(p / 10000^{2i/d})`` — no parameters and no
length limit, and decoder step ``t`` needs only ``t``.

Incremental decoding (the interface of :mod:`distil.models.seq2seq_encoded`):

* ``encode`` computes every decoder layer's cross-attention keys and values once per sentence:
  ``Encoded.memory`` is ``(B, S, 2·L·d)`` (layer ``l``'s keys, then its values, per source position), so
  a decoder step never projects the source again;
* the state is the self-attention cache ``(keys, values)``, each ``(L, B, h, P, d/h)`` for the ``P``
  target tokens seen (``P = 0`` in ``Encoded.state``); ``decode`` appends the new tokens' keys and values,
  whose positions are ``P ..``. The batch is on dim 1, as the LSTM's ``(h, c)``, so beam search reorders
  and repeats it with the same code.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from distil.errors import ModelError
from distil.models.checks import positive_int, probability
from distil.models.gpt import causal_mask
from distil.models.seq2seq_encoded import Encoded, State
from distil.models.text_embedding import PAD_ID


def sinusoids(positions: torch.Tensor, width: int) -> torch.Tensor:
    """``(len(positions), width)``: ``sin(p / 10000^{2i/width})`` at column ``2i``, ``cos(…)`` at ``2i + 1`` (Vaswani et al. §3.5)."""
    rates = torch.exp(torch.arange(0, width, 2, device=positions.device, dtype=torch.float32) * (-math.log(10000.0) / width))
    angles = positions.to(torch.float32).unsqueeze(1) * rates.unsqueeze(0)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


class Attention(nn.Module):
    """Multi-head scaled dot-product attention; keys and values are projected apart (:meth:`keys_values`)
    so a decoder can cache them."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x`` ``(B, N, d)``, each ``(B, h, N, d/h)``."""
        k, v = self.key_value(x).view(x.shape[0], x.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Queries from ``x`` ``(B, T, d)``; ``mask`` (True: attend) broadcasts to ``(B, h, T, N)``."""
        b, t, width = x.shape
        q = self.query(x).view(b, t, self.heads, -1).transpose(1, 2)
        scores = torch.matmul(q, keys.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        attended = torch.matmul(self.drop(torch.softmax(scores, dim=-1)), values)
        return self.proj(attended.transpose(1, 2).reshape(b, t, width))


def feed_forward(width: int, ffn: int, dropout: float) -> nn.Sequential:
    """``W_2 ReLU(W_1 x + b_1) + b_2`` (dropout after the ReLU, as tensor2tensor and fairseq)."""
    return nn.Sequential(OrderedDict(fc1=nn.Linear(width, ffn), act=nn.ReLU(), drop=nn.Dropout(dropout), fc2=nn.Linear(ffn, width)))


class EncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.norm2, self.ffn = nn.LayerNorm(width), feed_forward(width, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, *self.attn.keys_values(h), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.self_attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.norm2, self.cross_attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.norm3, self.ffn = nn.LayerNorm(width), feed_forward(width, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, y: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor, causal: torch.Tensor,
        cross_keys: torch.Tensor, cross_values: torch.Tensor, source_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``y`` after the layer, and the self-attention keys and values of the past and new tokens."""
        h = self.norm1(y)
        k, v = self.self_attn.keys_values(h)
        k, v = torch.cat([past_keys, k], dim=2), torch.cat([past_values, v], dim=2)
        y = y + self.drop(self.self_attn(h, k, v, causal))
        y = y + self.drop(self.cross_attn(self.norm2(y), cross_keys, cross_values, source_mask))
        return y + self.drop(self.ffn(self.norm3(y))), k, v


class TransformerSeq2Seq(nn.Module):
    """Pre-norm Transformer encoder–decoder (see the module doc). ``forward(src, tgt_in)`` → logits ``(B, T, V)``."""

    #: The decoder state (the self-attention cache) by name and its dynamic axes (the ONNX export's input names).
    state_axes: ClassVar[dict[str, dict[int, str]]] = {"keys": {1: "batch", 3: "past"}, "values": {1: "batch", 3: "past"}}

    def __init__(
        self, src_vocab: int, tgt_vocab: int, *, d_model: int = 256, heads: int = 4, layers: int = 3, decoder_layers: int | None = None,
        ffn: int | None = None, dropout: float = 0.1, tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        name = "transformer"
        d_model, heads = positive_int(name, "d_model", d_model), positive_int(name, "heads", heads)
        if d_model % heads or d_model % 2:
            raise ModelError(f"model 'transformer': d_model {d_model} must be even (sin/cos positions) and a multiple of heads ({heads})")
        self.d_model, self.heads = d_model, heads
        layers = positive_int(name, "layers", layers)
        decoder_layers = positive_int(name, "decoder_layers", layers if decoder_layers is None else decoder_layers)
        ffn = positive_int(name, "ffn", 4 * d_model if ffn is None else ffn)
        dropout = probability(name, "dropout", dropout)
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=PAD_ID)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(d_model)
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn, dropout) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.out = None if tie_embeddings else nn.Linear(d_model, tgt_vocab)
        self.drop = nn.Dropout(dropout)
        for module in self.modules():  # fairseq's initialisation: Xavier for projections, N(0, d^-1/2) embeddings (√d·E has unit scale)
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for embed in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embed.weight, 0.0, d_model**-0.5)
            nn.init.zeros_(embed.weight[PAD_ID])

    def _embed(self, embed: nn.Embedding, ids: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device) + start
        return self.drop(embed(ids) * math.sqrt(self.d_model) + sinusoids(positions, self.d_model).to(embed.weight.dtype))

    def encode(self, src: torch.Tensor) -> Encoded:
        mask = src != PAD_ID
        keys_mask = mask[:, None, None, :]
        x = self._embed(self.src_embed, src, 0)
        for layer in self.encoder:
            x = layer(x, keys_mask)
        x = self.encoder_norm(x)
        b, s = src.shape
        cross = [kv.transpose(1, 2).reshape(b, s, self.d_model) for layer in self.decoder for kv in layer.cross_attn.keys_values(x)]
        empty = x.new_zeros((len(self.decoder), b, self.heads, 0, self.d_model // self.heads))
        return Encoded(torch.cat(cross, dim=-1), mask, (empty, empty))

    def decode(self, tgt_in: torch.Tensor, enc: Encoded, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits ``(B, T, V)`` for ``tgt_in`` after the ``P`` tokens cached in ``state``, and the cache after them."""
        past_keys, past_values = state if state is not None else enc.state
        past, t = past_keys.shape[3], tgt_in.shape[1]
        y = self._embed(self.tgt_embed, tgt_in, past)
        b, s = enc.mask.shape
        cross = enc.memory.reshape(b, s, len(self.decoder), 2, self.heads, -1)
        source_mask = enc.mask[:, None, None, :]
        causal = causal_mask(t, past + t, tgt_in.device)
        keys, values = [], []
        for i, layer in enumerate(self.decoder):
            y, k, v = layer(y, past_keys[i], past_values[i], causal, cross[:, :, i, 0].transpose(1, 2), cross[:, :, i, 1].transpose(1, 2), source_mask)
            keys.append(k)
            values.append(v)
        y = self.decoder_norm(y)
        logits = F.linear(y, self.tgt_embed.weight) if self.out is None else self.out(y)
        return logits, (torch.stack(keys), torch.stack(values))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src))[0]
