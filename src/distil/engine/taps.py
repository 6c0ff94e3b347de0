"""Taps: read a layer's output (or input) by its module path, with forward hooks; the model is not changed.

``"layer2"`` is the output of ``model.layer2``; ``"layer2:input"`` its (first) input; ``"logits"`` is
the model's own output. Hooks live only inside ``with Taps(model, paths) as taps:`` and are removed on
exit, even on error, so nothing leaks from one run into the next.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from types import TracebackType

import torch
from torch import nn

from distil.data.tokens import is_tokens, trim

LOGITS = "logits"
INPUT_SUFFIX = ":input"


def split_path(tap: str) -> tuple[str, bool]:
    """``"layer2:input"`` → ``("layer2", True)``; ``"layer2"`` → ``("layer2", False)``."""
    if tap.endswith(INPUT_SUFFIX):
        return tap[: -len(INPUT_SUFFIX)], True
    return tap, False


def find_module(model: nn.Module, tap: str) -> nn.Module:
    """The submodule a tap names; a name that doesn't exist is a ``KeyError`` listing the nearest paths."""
    path, _ = split_path(tap)
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(path, names, n=5, cutoff=0.4)
    hint = f"nearest: {', '.join(close)}" if close else f"top-level modules: {', '.join(n for n in names if '.' not in n)}"
    raise KeyError(f"{type(model).__name__} has no module {path!r} ({hint})")


class Taps:
    """Capture the outputs (or inputs) of named submodules during forwards inside the ``with`` block."""

    def __init__(self, model: nn.Module, taps: Iterable[str]) -> None:
        self.model = model
        self.taps = sorted({t for t in taps if t != LOGITS})
        self.modules = {t: find_module(model, t) for t in self.taps}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Taps:
        for tap, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(tap)))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.outputs = {}

    def _hook(self, tap: str):
        _, wants_input = split_path(tap)

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            value = args[0] if wants_input else output
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"tap {tap!r}: the module's {'input' if wants_input else 'output'} is a {type(value).__name__}, not a tensor")
            self.outputs[tap] = value

        return hook

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the model once and return ``{"logits": ..., tap: tensor, ...}``."""
        self.outputs = {}
        logits = self.model(x)
        missing = [t for t in self.taps if t not in self.outputs]
        if missing:
            raise RuntimeError(f"taps {missing} did not fire: those modules are not used in the model's forward")
        return {LOGITS: logits, **self.outputs}


# Named tap groups, resolved per model from one probe batch, so a method preset works on any
# architecture: "stages" are the ends of its resolution stages, "embedding" the input of its last
# linear layer (the penultimate feature vector), "last_stage" the last of the stages.
AUTO_TAPS = ("stages", "middle_stage", "last_stage", "embedding")
POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d)


def probe_shapes(model: nn.Module, x: torch.Tensor, taps: Iterable[str]) -> dict[str, torch.Size]:
    """Shapes of ``taps`` for one batch ``x``, in eval mode without autograd (the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Taps(model, taps) as t:
            return {k: v.shape for k, v in t.forward(x).items()}
    finally:
        model.train(was_training)


def length_axes(model: nn.Module, x: torch.Tensor, taps: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """For a batch of token ids ``x``: the axes of each tap's output whose size follows the batch's length.

    Found by probing ``x`` and ``x`` one token shorter: hidden states (B, L, D) → ``(1,)``, attention
    maps (B, H, L, L) → ``(2, 3)``, convolution maps (B, C, L + w − 1) → ``(2,)``, sentence vectors → ``()``.
    The layout is read, not guessed from the rank, because the trainer cuts every batch to its own
    length. A probe of one-token sentences cannot show it; then rank 3 is taken as (B, L, D) and rank
    4 as (B, H, L, L).
    """
    x = trim(x)
    if x.shape[1] < 2:
        conventional = {3: (1,), 4: (2, 3)}
        return {k: conventional.get(len(s), ()) for k, s in probe_shapes(model, x, taps).items()}
    full, shorter = probe_shapes(model, x, taps), probe_shapes(model, x[:, :-1], taps)
    return {k: tuple(i for i in range(1, len(s)) if s[i] != shorter[k][i]) for k, s in full.items()}


def stage_taps(model: nn.Module, x: torch.Tensor) -> list[str]:
    """For each spatial resolution among the top-level children's outputs, the last child producing it.

    ``resnet8`` → ``[layer1, layer2, layer3]``; ``cnn`` → ``[stage1, stage2, stage3]``. Only feature
    maps (3-D or 4-D outputs) count; a model whose top level is a single container is looked into.
    """
    children = list(model.named_children())
    while len(children) == 1 and list(children[0][1].children()):
        prefix, only = children[0]
        children = [(f"{prefix}.{n}", m) for n, m in only.named_children()]
    # A global pool keeps the rank of a feature map but is the head's first step, not a stage.
    children = [(n, m) for n, m in children if not isinstance(m, POOLS)]
    shapes = probe_shapes(model, x, [n for n, _ in children])
    stages: dict[tuple[int, ...], str] = {}
    for name, _ in children:
        shape = shapes[name]
        if len(shape) in (3, 4):
            stages.pop(tuple(shape[2:]), None)  # keep insertion order of the last child per resolution
            stages[tuple(shape[2:])] = name
    if not stages:
        raise KeyError(f"{type(model).__name__} has no top-level module that outputs a feature map; name the layers to tap explicitly")
    return list(stages.values())


def embedding_tap(model: nn.Module) -> str:
    """The input of the model's last ``nn.Linear``: the feature vector the classifier reads."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise KeyError(f"{type(model).__name__} has no nn.Linear layer; name the embedding layer to tap explicitly")
    return linears[-1] + INPUT_SUFFIX


def resolve_taps(model: nn.Module, x: torch.Tensor, tap: str) -> list[str]:
    """A tap name or group (``stages``, ``middle_stage``, ``last_stage``, ``embedding``) → concrete tap names.

    A group may sit under a submodule that takes the model's own input — ``members.0.stages`` is the
    stages of an ensemble's first member — and resolves to paths under that submodule.
    """
    prefix, _, group = tap.rpartition(".")
    if prefix and group in AUTO_TAPS:
        return [f"{prefix}.{t}" for t in resolve_taps(find_module(model, prefix), x, group)]
    if tap in ("stages", "middle_stage", "last_stage") and is_tokens(x):
        raise KeyError(
            f"the tap group {tap!r} names the resolution stages of an image network; a text model has none: "
            "name its layers (text_transformer: 'layers.N' hidden states, 'layers.N.attn.probs' attention maps; "
            "minilm: 'backbone.encoder.layer.N') or use 'embedding'"
        )
    if tap == "stages":
        return stage_taps(model, x)
    if tap == "last_stage":
        return stage_taps(model, x)[-1:]
    if tap == "middle_stage":
        stages = stage_taps(model, x)
        return [stages[(len(stages) - 1) // 2]] if len(stages) > 1 else stages
    if tap == "embedding":
        return [embedding_tap(model)]
    if tap != LOGITS:
        find_module(model, tap)
    return [tap]
