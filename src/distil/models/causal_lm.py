"""Causal language models for distillation: distil's ``gpt`` (or any zoo model) or a Hugging Face
``AutoModelForCausalLM`` folder (``hf:PATH``), behind one interface.

Both give ``forward(ids) → logits (B, L, V)``, ``step(ids, past) → (logits, past')`` for
:func:`~distil.models.generate.generate`, ``max_length`` (positions) and ``vocab_size`` (the width of the
logits). Teacher and student must predict over the same vocabulary — the per-token losses compare
distributions position by position and id by id — so :func:`check_same_vocabulary` refuses a pair
whose logits differ in width, naming both.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from distil.errors import ModelError
from distil.models.hf import transformers_module
from distil.models.registry import build_model
from distil.pretrained import PretrainedError, is_pretrained_spec, pretrained_folder


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM returning plain logits; ``step`` passes its ``past_key_values`` along."""

    def __init__(self, model: nn.Module, max_length: int, vocab_size: int) -> None:
        super().__init__()
        self.model = model
        self.max_length = max_length
        self.vocab_size = vocab_size
        # transformers ≥ 5 names the cache argument `cache` (past_key_values is deprecated); older ones past_key_values
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=x, use_cache=False).logits

    def step(self, ids: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: past})
        return out.logits, getattr(out, self._cache_arg)


def hf_causal_lm(spec: str) -> HFCausalLM:
    """The ``AutoModelForCausalLM`` in the folder ``spec`` names (``hf:PATH`` or a short name), fp32, offline."""
    try:
        folder = pretrained_folder(spec, needs="config.json", what="a Hugging Face causal LM folder (config.json and weights)")
    except PretrainedError as err:
        raise ModelError(str(err)) from None
    transformers = transformers_module(spec)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).float()
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"model {spec!r}: {folder} cannot be loaded as a causal LM ({err})") from None
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 2048
    return HFCausalLM(model, int(positions), int(model.get_output_embeddings().weight.shape[0]))


def build_causal_lm(spec: str, *, vocab_size: int, context_length: int, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """A zoo model (``gpt``, ``package.module:factory``) for ``vocab_size`` tokens and ``context_length`` positions,
    or a pretrained folder (``hf:PATH``; ``kwargs`` must then be empty). Its vocabulary is checked against the data's."""
    if is_pretrained_spec(spec):
        if kwargs:
            raise ModelError(f"model {spec!r} is a pretrained folder: it takes no arguments, got {', '.join(kwargs)}")
        if seed is not None:
            torch.manual_seed(seed)
        model = hf_causal_lm(spec)
        if model.max_length < context_length:
            raise ModelError(f"model {spec!r} has {model.max_length} positions, fewer than the data's context_length {context_length}")
    else:
        model = build_model(spec, input_shape=(context_length,), num_classes=vocab_size, vocab_size=vocab_size, seed=seed, **kwargs)
        if not hasattr(model, "step"):
            raise ModelError(f"model {spec!r} cannot generate: a causal LM needs step(ids, past) → (logits, past) (see distil.models.gpt)")
    check_vocabulary(spec, model, vocab_size)
    return model


def vocabulary_of(model: nn.Module) -> int:
    """How many tokens ``model`` predicts (its ``vocab_size``)."""
    size = getattr(model, "vocab_size", None)
    if not isinstance(size, int):
        raise ModelError(f"{type(model).__name__} does not say its vocab_size; a causal LM for distil must")
    return size


def check_vocabulary(spec: str, model: nn.Module, vocab_size: int) -> None:
    """A ModelError unless ``model`` predicts exactly the tokenizer's ``vocab_size`` tokens."""
    size = vocabulary_of(model)
    if size != vocab_size:
        raise ModelError(
            f"model {spec!r} predicts {size} tokens but the tokenizer has {vocab_size}: teacher, student and tokenizer must share "
            "one vocabulary (use the teacher folder's tokenizer, data.tokenizer: hf:PATH, or build both models on the learnt one)"
        )


def check_same_vocabulary(teacher: nn.Module, student: nn.Module) -> None:
    """Teacher and student must give logits over the same tokens; else a ModelError naming both sizes."""
    t, s = vocabulary_of(teacher), vocabulary_of(student)
    if t != s:
        raise ModelError(
            f"teacher and student vocabularies differ (teacher {t} tokens, student {s}): per-token distillation compares the two "
            "distributions id by id, so both must use one tokenizer"
        )
