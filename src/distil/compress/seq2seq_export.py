"""ONNX export of a sequence-to-sequence model as two files: the encoder and one decoder step.

A translation is a loop — encode once, then one decoder step per output token, the search (greedy or
beam) choosing the next token — so what runs without Python training code is the two graphs the loop
calls, not the loop itself:

* ``encoder.onnx``: ``src`` int64 ``(batch, length)`` → ``memory`` ``(batch, length, ·)``,
  ``mask`` bool ``(batch, length)``, then the decoder's first state, one output per state tensor;
* ``decoder_step.onnx``: ``token`` int64 ``(batch, 1)``, ``memory``, ``mask`` and the state → ``logits``
  ``(batch, 1, V)`` and the state after the token (``NAME_out``).

The state is whatever tuple of tensors the model's ``decode`` carries (batch on dim 1,
:mod:`distil.models.seq2seq_encoded`), named and given its dynamic axes by the model's ``state_axes``:
the LSTM's ``h``, ``c`` ``(layers, batch, H)``; the Transformer's self-attention cache ``keys``,
``values`` ``(layers, batch, heads, past, D/heads)`` whose ``past`` axis grows by one each step (the
encoder returns it empty, ``past = 0``; the step is traced with ``past = 2``).

:class:`OnnxSeq2Seq` wraps the two ONNX Runtime sessions in the model's own interface (``encode``,
``decode``), so :func:`distil.models.seq2seq_decode.greedy` / ``beam_search`` drive it unchanged: the
search is ~40 lines of tensor code a server keeps; the weights are all in the files. The torchscript
exporter is used: it keeps the batch and length axes of ``nn.LSTM`` dynamic (see
:func:`distil.compress.export.export_onnx`), and the Transformer's positions and causal mask, computed
from the cache's length, stay dynamic too.

:func:`seq2seq_parity`: on real sentences, the largest logit difference of the two graphs against
PyTorch, and the share of sentences whose greedy translation is token-for-token the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distil.compress.export import ExportError, _quiet, session
from distil.models.seq2seq_decode import BOS_ID, greedy
from distil.models.seq2seq_encoded import Encoded, State
from distil.models.seq2seq_ensemble import Seq2SeqEnsemble
from distil.weights import atomic_write

ENCODER, STEP = "encoder.onnx", "decoder_step.onnx"


def state_axes(model: nn.Module, state: tuple[torch.Tensor, ...]) -> dict[str, dict[int, str]]:
    """The model's state tensors by name with their dynamic axes (``model.state_axes``; else ``state0``, … with the batch on dim 1)."""
    declared = getattr(model, "state_axes", None)
    return dict(declared) if declared else {f"state{i}": {1: "batch"} for i in range(len(state))}


class _EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor):
        enc = self.model.encode(src)
        return (enc.memory, enc.mask, *enc.state)


class _StepGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, *state: torch.Tensor):
        logits, state = self.model.decode(token, Encoded(memory, mask, state), state)
        return (logits, *state)


def export_seq2seq(model: nn.Module, folder: str | Path, example: torch.Tensor, opset: int = 17) -> tuple[Path, Path]:
    """Write ``folder/encoder.onnx`` and ``folder/decoder_step.onnx`` (see the module doc); ``example``: real source ids ``(B, L)``."""
    if isinstance(model, Seq2SeqEnsemble):
        raise ExportError(
            f"{type(model).__name__} cannot be exported as one encoder and one decoder step (an ensemble's members each keep their own "
            "memory): export its members one by one"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    example = example.cpu()
    with torch.no_grad():
        enc = model.encode(example)
        # The step is traced after two tokens, so a cache that grows with the prefix (the Transformer's) is non-empty.
        _, state = model.decode(torch.full((example.shape[0], 2), BOS_ID, dtype=torch.int64), enc)
        token = torch.full((example.shape[0], 1), BOS_ID, dtype=torch.int64)
    axes = state_axes(model, state)
    source = {"memory": {0: "batch", 1: "length"}, "mask": {0: "batch", 1: "length"}}
    grown = {f"{name}_out": {d: a if a == "batch" else f"{a}_next" for d, a in ax.items()} for name, ax in axes.items()}
    step_axes = {"token": {0: "batch"}, **source, **axes, "logits": {0: "batch"}, **grown}

    def write_encoder(tmp: Path) -> None:
        with _quiet(), torch.no_grad():
            torch.onnx.export(_EncoderGraph(model), (example,), str(tmp), dynamo=False, opset_version=opset, input_names=["src"],
                              output_names=["memory", "mask", *axes], dynamic_axes={"src": {0: "batch", 1: "length"}, **source, **axes})  # fmt: skip

    def write_step(tmp: Path) -> None:
        with _quiet(), torch.no_grad():
            torch.onnx.export(_StepGraph(model), (token, enc.memory, enc.mask, *state), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["token", "memory", "mask", *axes], output_names=["logits", *grown], dynamic_axes=step_axes)  # fmt: skip

    try:
        atomic_write(folder / ENCODER, write_encoder)
        atomic_write(folder / STEP, write_step)
    except Exception as err:  # noqa: BLE001  the exporter's own error, reported with the model's name
        raise ExportError(f"onnx export of {type(model).__name__} (encoder + decoder step) failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from None
    return folder / ENCODER, folder / STEP


class OnnxSeq2Seq:
    """The two exported graphs behind the model's ``encode`` / ``decode`` interface (torch tensors in and out)."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        folder = Path(folder)
        self.encoder = session(folder / ENCODER, threads)
        self.step = session(folder / STEP, threads)
        self.folder = folder
        #: The step's state inputs in the order its outputs return them (files of any model, or of an older export).
        self.state_names = [i.name for i in self.step.get_inputs() if i.name not in ("token", "memory", "mask")]

    def eval(self) -> OnnxSeq2Seq:
        return self

    def encode(self, src: torch.Tensor) -> Encoded:
        memory, mask, *state = self.encoder.run(None, {"src": src.cpu().numpy().astype(np.int64)})
        return Encoded(torch.from_numpy(memory), torch.from_numpy(mask), tuple(torch.from_numpy(s) for s in state))

    def decode(self, tokens: torch.Tensor, enc: Encoded, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One decoder step: the logits of ``tokens[:, -1]`` given ``state`` (the earlier tokens'); the
        exported graph takes one token at a time, so a prefix without its state is refused."""
        if state is None and tokens.shape[1] > 1:
            raise ValueError(f"the ONNX decoder step takes one token at a time; got a prefix of {tokens.shape[1]} tokens without its state")
        state = state if state is not None else enc.state
        feeds = {"token": tokens[:, -1:].cpu().numpy().astype(np.int64), "memory": enc.memory.contiguous().numpy(), "mask": enc.mask.contiguous().numpy(),
                 **{name: s.contiguous().numpy() for name, s in zip(self.state_names, state, strict=True)}}  # fmt: skip
        logits, *state = self.step.run(None, feeds)
        return torch.from_numpy(logits), tuple(torch.from_numpy(s) for s in state)


@dataclass(frozen=True)
class Seq2SeqParity:
    sentences: int
    max_abs_diff: float  # of the decoder-step logits along PyTorch's greedy path
    same_translation: float  # share of sentences with token-identical greedy output

    def as_dict(self) -> dict[str, Any]:
        return {"sentences": self.sentences, "max_abs_diff": self.max_abs_diff, "same_translation": self.same_translation}


@torch.inference_mode()
def seq2seq_parity(model: nn.Module, onnx: OnnxSeq2Seq, src: torch.Tensor) -> Seq2SeqParity:
    """The ONNX graphs against PyTorch on real sentences ``src`` (each alone, and all as one padded batch)."""
    model = copy.deepcopy(model).cpu().eval()  # the caller's model stays where it is
    reference = greedy(model, src)
    candidate = greedy(onnx, src)
    width = max(reference.shape[1], candidate.shape[1])
    pad = lambda t: nn.functional.pad(t, (0, width - t.shape[1]))
    same = (pad(reference) == pad(candidate)).all(1)
    tgt_in = torch.cat([torch.full((len(src), 1), BOS_ID, dtype=torch.int64), reference[:, :-1]], 1)
    torch_logits = model.decode(tgt_in, model.encode(src))[0]
    enc, state, steps = onnx.encode(src), None, []
    for t in range(tgt_in.shape[1]):
        logits, state = onnx.decode(tgt_in[:, t : t + 1], enc, state)
        steps.append(logits)
    onnx_logits = torch.cat(steps, 1)
    real = reference != 0
    diff = (torch_logits - onnx_logits).abs()[real]
    return Seq2SeqParity(len(src), round(float(diff.max()), 6), round(float(same.float().mean()), 4))
