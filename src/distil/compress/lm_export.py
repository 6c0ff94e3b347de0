"""ONNX export of a causal LM with its KV cache: one graph for prefill and decoding, run by ONNX Runtime.

The graph is :meth:`GPT.step <distil.models.gpt.GPT.step>` with the cache as one tensor::

    inputs   ids      int64 (B, T)
             past     fp32  (layers, 2, B, heads, P, width/heads)     keys [.., 0] and values [.., 1]; P may be 0
    outputs  logits   fp32  (B, T, vocab)
             present  fp32  (layers, 2, B, heads, P + T, width/heads)

B, T and P are dynamic axes (the TorchScript exporter, which keeps sizes read in ``arange`` symbolic), so
one file serves the prompt (P = 0, T = prompt length) and every later token (T = 1). :class:`OnnxLM`
wraps an ONNX Runtime session in the ``step(ids, past)`` / ``max_length`` interface, so
:func:`~distil.models.generate.generate` drives it unchanged, and :func:`export_lm_onnx` checks that
the exported graph's greedy continuation equals PyTorch's before it keeps the file.

Only distil's ``gpt`` exports this way: a Hugging Face causal LM has its own cache classes (use
``optimum``'s exporter for those).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distil.compress.export import session
from distil.errors import ModelError
from distil.models.generate import generate
from distil.models.gpt import GPT
from distil.weights import atomic_write

INPUTS, OUTPUTS = ["ids", "past"], ["logits", "present"]


class StackedStep(nn.Module):
    """``GPT.step`` with the per-layer ``(keys, values)`` list as one stacked tensor (a graph has flat inputs)."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, caches = self.model.step(ids, [(past[i, 0], past[i, 1]) for i in range(past.shape[0])])
        return logits, torch.stack([torch.stack(kv) for kv in caches])


def empty_past(model: GPT, batch: int) -> torch.Tensor:
    layer = model.layers[0].attn
    width = model.embedding.embedding_dim
    return torch.zeros(len(model.layers), 2, batch, layer.heads, 0, width // layer.heads)


def export_lm_onnx(model: GPT, path: str | Path, *, opset: int = 18, check_tokens: int = 8) -> Path:
    """Write ``model`` as one ONNX step graph with a KV cache (see the module docstring); the greedy
    continuation of a probe prompt by ONNX Runtime must equal PyTorch's, else ModelError and no file."""
    if not isinstance(model, GPT):
        raise ModelError(f"ONNX export with a KV cache supports distil's gpt, got {type(model).__name__}")
    path = Path(path)
    model = model.eval().cpu()
    ids = torch.randint(1, model.vocab_size, (2, 3), generator=torch.Generator().manual_seed(0))
    past = StackedStep(model)(ids, empty_past(model, 2))[1]  # a non-empty example cache: P = 3

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                StackedStep(model),
                (ids, past),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=INPUTS,
                output_names=OUTPUTS,
                dynamic_axes={"ids": {0: "batch", 1: "new"}, "past": {2: "batch", 4: "seen"}, "logits": {0: "batch", 1: "new"}, "present": {2: "batch", 4: "total"}},
            )

    tmp = path.with_name(path.name + ".check")
    write(tmp)
    try:
        onnx_model = OnnxLM(tmp, max_length=model.max_length, vocab_size=model.vocab_size)
        prompts = torch.randint(1, model.vocab_size, (3, 4), generator=torch.Generator().manual_seed(1))
        new = min(check_tokens, model.max_length - 4)
        expected, got = generate(model, prompts, new), generate(onnx_model, prompts, new)
        if not torch.equal(expected, got):
            raise ModelError(f"ONNX export of the LM: ONNX Runtime's greedy tokens differ from PyTorch's ({got.tolist()} vs {expected.tolist()})")
        atomic_write(path, lambda out: out.write_bytes(tmp.read_bytes()))
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"max_length": model.max_length, "vocab_size": model.vocab_size, "layers": len(model.layers), "inputs": INPUTS, "outputs": OUTPUTS}
    atomic_write(path.with_suffix(".json"), lambda out: out.write_text(json.dumps(meta, indent=1)))
    return path


class OnnxLM:
    """An exported LM step graph under ONNX Runtime, with the ``step``/``max_length`` interface of generation."""

    training = False

    def __init__(self, path: str | Path, *, max_length: int | None = None, vocab_size: int | None = None, threads: int | None = None) -> None:
        path = Path(path)
        meta_file = path.with_suffix(".json")
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.max_length = int(max_length or meta["max_length"])
        self.vocab_size = int(vocab_size or meta["vocab_size"])
        self.session = session(path, threads)
        shape = self.session.get_inputs()[1].shape  # (layers, 2, batch, heads, seen, head_dim)
        self.layers, self.heads, self.head_dim = int(shape[0]), int(shape[3]), int(shape[5])

    def step(self, ids: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if past is None:
            past = torch.zeros(self.layers, 2, ids.shape[0], self.heads, 0, self.head_dim)
        logits, present = self.session.run(OUTPUTS, {"ids": ids.cpu().numpy().astype(np.int64), "past": past.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(present)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.step(ids)[0]

    def eval(self) -> OnnxLM:  # a graph has no training mode; the measuring code calls eval() on any model
        return self
