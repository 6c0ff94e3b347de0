"""Batched generation from a causal language model with a KV cache: greedy (temperature 0) or sampling.

A model generates if it has ``step(ids, past) → (logits (B, L, V), past')`` and ``max_length``
(:class:`~distil.models.gpt.GPT`, :class:`~distil.models.causal_lm.HFCausalLM`). The prompt is run
once (prefill), then one token per step reads the cache, so a step costs one token's forward instead
of the whole prefix. Prompts in one call share a length (no padding inside a generated batch).
Sampling draws from ``softmax(logits / temperature)`` with a ``torch.Generator``, so a seed gives the
same samples; ``top_k`` keeps only the ``k`` most likely tokens before drawing.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from distil.errors import ModelError


class Generating(Protocol):
    max_length: int

    def step(self, ids: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]: ...


def next_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None, top_k: int | None = None) -> torch.Tensor:
    """The next token of each row of ``logits`` ``(B, V)``: argmax at temperature 0, else a draw."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate(
    model: Generating,
    prompts: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """``prompts`` ``(B, P)`` followed by ``max_new_tokens`` generated tokens: ``(B, P + max_new_tokens)``.

    The model reads every token but the last, so ``P + max_new_tokens − 1`` may not pass its ``max_length``
    (its positions); ``max_new_tokens = 0`` returns the prompts.
    """
    if prompts.dim() != 2 or prompts.shape[1] == 0:
        raise ModelError(f"generate: prompts must be token ids (B, P) with P ≥ 1, got shape {tuple(prompts.shape)}")
    if prompts.shape[1] + max_new_tokens - 1 > model.max_length:
        raise ModelError(
            f"generate: a prompt of {prompts.shape[1]} tokens plus {max_new_tokens} new ones needs {prompts.shape[1] + max_new_tokens - 1} "
            f"positions, more than the model's context of {model.max_length}"
        )
    if max_new_tokens <= 0:
        return prompts
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        logits, past = model.step(prompts, None)
        out = [prompts, next_tokens(logits[:, -1], temperature, generator, top_k)[:, None]]
        for _ in range(max_new_tokens - 1):
            logits, past = model.step(out[-1], past)
            out.append(next_tokens(logits[:, -1], temperature, generator, top_k)[:, None])
    finally:
        if was_training:
            model.train()
    return torch.cat(out, dim=1)
