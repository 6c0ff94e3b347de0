"""Batched greedy and beam-search decoding of a sequence-to-sequence model (:mod:`distil.models.seq2seq`).

The model gives ``encode(src) → Encoded`` and ``decode(tokens, enc, state) → (logits, state)``
(:mod:`distil.models.seq2seq_encoded`: the state is a tuple of tensors with the batch on dim 1, an
LSTM's ``(h, c)`` or a Transformer's key/value cache, reordered by one function). Both
decoders run a whole batch of sentences at once, one decoder step per target position, and stop when
every row has produced ``[EOS]`` or reached its length limit (``max_len``). Output rows are the target
ids without ``[BOS]``, ``[EOS]`` kept, padded with 0 after it.

Beam search keeps ``K`` hypotheses per sentence (rows ``b·K + j``); a finished hypothesis stays in its
slot with its score frozen. The final choice normalises each score by the GNMT length penalty
(Wu et al. 2016): ``score / lp(|y|)``, ``lp(n) = ((5 + n) / 6)^α`` — ``α = 0`` compares raw
log-probabilities (short outputs win), larger ``α`` favours longer ones.
"""

from __future__ import annotations

import torch
from torch import nn

from distil.models.seq2seq_encoded import reorder_state
from distil.models.text_embedding import PAD_ID

#: The ids of ``[BOS]`` and ``[EOS]`` in every translation vocabulary (distil.data.text.subwords; data is a sibling layer).
BOS_ID, EOS_ID = 2, 3


def next_token_logits(logits: torch.Tensor) -> torch.Tensor:
    """The last position's logits ``(B, V)`` with ``[PAD]`` and ``[BOS]`` ruled out: never generated (training
    never has them as a target, but their logits are finite)."""
    out = logits[:, -1].float().clone()
    out[:, PAD_ID] = float("-inf")
    out[:, BOS_ID] = float("-inf")
    return out


def length_limit(src: torch.Tensor, max_len: int | None = None) -> int:
    """Target tokens to generate at most: twice the longest source plus 10, capped at ``max_len``."""
    limit = 2 * int((src != PAD_ID).sum(1).max()) + 10
    return min(limit, max_len) if max_len else limit


def length_penalty(n: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ``((5 + n) / 6)^α``."""
    return ((5.0 + n.to(torch.float32)) / 6.0) ** alpha


@torch.inference_mode()
def greedy(model: nn.Module, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """The argmax token at every step; ids ``(B, T)`` (see the module doc)."""
    enc = model.encode(src)
    b = src.shape[0]
    token = torch.full((b, 1), BOS_ID, dtype=torch.int64, device=src.device)
    done = torch.zeros(b, dtype=torch.bool, device=src.device)
    out, state = [], None
    for _ in range(length_limit(src, max_len)):
        logits, state = model.decode(token, enc, state)
        token = next_token_logits(logits).argmax(-1, keepdim=True)
        token = token.masked_fill(done.unsqueeze(1), PAD_ID)
        out.append(token)
        done |= token.squeeze(1) == EOS_ID
        if bool(done.all()):
            break
    return torch.cat(out, 1)


@torch.inference_mode()
def beam_search(model: nn.Module, src: torch.Tensor, beam: int = 5, alpha: float = 0.6, max_len: int | None = None) -> torch.Tensor:
    """The best of ``beam`` hypotheses per sentence by length-normalised log-probability; ids ``(B, T)``."""
    if beam == 1:
        return greedy(model, src, max_len)
    b, k = src.shape[0], beam
    enc = model.encode(src).repeat(k)
    device = src.device
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros((b, k, 0), dtype=torch.int64, device=device)
    done = torch.zeros((b, k), dtype=torch.bool, device=device)
    token = torch.full((b * k, 1), BOS_ID, dtype=torch.int64, device=device)
    state = None
    rows = torch.arange(b, device=device).unsqueeze(1)
    for _ in range(length_limit(src, max_len)):
        logits, state = model.decode(token, enc, state)
        logp = torch.log_softmax(next_token_logits(logits), -1).view(b, k, -1)
        # A finished hypothesis continues with padding at no cost, and only with padding.
        frozen = torch.full_like(logp[0, 0], float("-inf"))
        frozen[PAD_ID] = 0.0
        logp = torch.where(done.unsqueeze(-1), frozen, logp)
        vocab = logp.shape[-1]
        top, flat = (scores.unsqueeze(-1) + logp).view(b, -1).topk(k, dim=1)
        origin, chosen = flat // vocab, flat % vocab
        scores = top
        history = torch.cat([history[rows, origin], chosen.unsqueeze(-1)], dim=-1)
        done = done[rows, origin] | (chosen == EOS_ID)
        pick = (rows * k + origin).view(-1)
        state = reorder_state(state, pick)
        token = chosen.view(-1, 1)
        if bool(done.all()):
            break
    lengths = (history != PAD_ID).sum(-1)
    best = (scores / length_penalty(lengths, alpha)).argmax(1)
    return history[torch.arange(b, device=device), best]


def decode(model: nn.Module, src: torch.Tensor, beam: int = 1, alpha: float = 0.6, max_len: int | None = None, batch_size: int = 128) -> torch.Tensor:
    """Greedy (``beam = 1``) or beam search over ``src`` in batches of similar length, in the input's order.

    Rows are padded with 0 to the longest output.
    """
    lengths = (src != PAD_ID).sum(1)
    order = torch.sort(lengths, stable=True).indices
    parts: list[torch.Tensor] = []
    for index in order.split(batch_size):
        batch = src[index]
        batch = batch[:, : max(1, int((batch != PAD_ID).sum(1).max()))]
        parts.append(beam_search(model, batch, beam, alpha, max_len))
    width = max(p.shape[1] for p in parts)
    out = torch.cat([nn.functional.pad(p, (0, width - p.shape[1]), value=PAD_ID) for p in parts])
    return out[order.argsort()]
