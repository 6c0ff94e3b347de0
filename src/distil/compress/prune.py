"""Pruning: global unstructured magnitude pruning, and structured channel pruning that removes channels.

Unstructured pruning (Han et al., 2015, "Learning both Weights and Connections", arXiv:1506.02626)
zeroes the smallest-magnitude weights of all conv and linear layers taken together, so layers that
matter less lose more. The zeros are held by ``torch.nn.utils.prune`` masks while a model is
fine-tuned (a masked weight gets no gradient and stays zero) and made permanent by :func:`finalize`.
The model keeps its shape: the file and the dense latency do not shrink, only the non-zero count.

Structured pruning (Li et al., 2017, "Pruning Filters for Efficient ConvNets", arXiv:1608.08710)
removes whole output channels of convolutions (and units of linear layers) with the smallest L1
norm, and rebuilds every layer that reads them with fewer inputs: the result is a smaller *dense*
model whose latency is measured, not assumed. Which layers share a channel dimension is found by
tracing the model with ``torch.fx``::

    conv → bn → relu → max-pool → conv        one channel space: conv.out, bn, next conv.in
    x + shortcut(x)                            an add joins the spaces of its inputs (residual group)

A space is pruned only if every op that touches it is understood (conv/linear with groups = 1,
BatchNorm, elementwise activations, pooling, dropout, identity, flatten of a 1×1 map, add); anything
else — the model's output, a reshape, a concatenation, a grouped convolution — freezes it, and the
space keeps all its channels. A residual group is pruned consistently: every conv that writes into
the add loses the same channels, chosen by their summed importance.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils import prune as torch_prune

from distil.errors import DistilError

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Ops that keep the channel dimension as it is (index c in → index c out).
PASSTHROUGH_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.Identity, nn.Dropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
PASSTHROUGH_FUNCTIONS = {F.relu, F.relu6, F.gelu, F.silu, torch.relu, torch.sigmoid, torch.tanh, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout}
JOINS = {operator.add, torch.add, operator.iadd}


class PruneError(DistilError):
    """The model cannot be pruned as asked (it cannot be traced, or no channel can be removed)."""


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    if not 0.0 <= sparsity < 1.0:
        raise PruneError(f"{what} must be in [0, 1), got {sparsity}")
    return float(sparsity)


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") for every conv and linear layer: what both kinds of pruning act on."""
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def count_nonzeros(model: nn.Module) -> int:
    """Non-zero entries over all parameters (masked weights count as what the forward uses)."""
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):  # pruned: the forward uses orig * mask
                p = p * getattr(module, name[: -len("_orig")] + "_mask")
            total += int(torch.count_nonzero(p).item())
    return total


def sparsity_of(model: nn.Module) -> float:
    """Fraction of zeros over the conv and linear weights."""
    weights = [getattr(m, n) for m, n in prunable_weights(model)]
    zeros = sum(int((w == 0).sum().item()) for w in weights)
    return zeros / max(1, sum(w.numel() for w in weights))


# ----------------------------------------------------------------------------------------------- unstructured


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest |w| over all conv/linear weights together (in place).

    Masks stay attached (a fine-tune keeps the zeros); applied again, the fraction is of the whole,
    not of what is left, so iterative rounds call this with a growing target. :func:`finalize` removes
    the masks and leaves plain zeros.
    """
    check_sparsity(sparsity)
    params = prunable_weights(model)
    if not params:
        raise PruneError(f"{type(model).__name__} has no conv or linear layer to prune")
    current = sparsity_of(model)
    if sparsity <= current:
        return model
    # torch's pruning containers take the amount as a fraction of the weights still unpruned
    amount = (sparsity - current) / (1.0 - current)
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=amount)
    return model


def finalize(model: nn.Module) -> nn.Module:
    """Make pruning masks permanent: plain ``weight`` tensors with zeros, no hooks (in place)."""
    for module in model.modules():
        for name in [n[: -len("_orig")] for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]:
            torch_prune.remove(module, name)
    return model


# ----------------------------------------------------------------------------------------------- structured


@dataclass
class ChannelSpace:
    """One channel dimension shared by several layers: who writes it, who normalises it, who reads it."""

    producers: list[str] = field(default_factory=list)  # conv/linear whose output channels these are
    norms: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)  # conv/linear whose input channels these are
    frozen: list[str] = field(default_factory=list)  # why the space cannot be pruned


class _Spaces:
    """Union-find over channel spaces; a space is identified by the fx node that created it."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.info: dict[int, ChannelSpace] = {}

    def new(self) -> int:
        i = len(self.parent)
        self.parent[i] = i
        self.info[i] = ChannelSpace()
        return i

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            info, other = self.info[a], self.info.pop(b)
            for k in ("producers", "norms", "consumers", "frozen"):
                getattr(info, k).extend(getattr(other, k))
        return a

    def get(self, i: int) -> ChannelSpace:
        return self.info[self.find(i)]

    def roots(self) -> list[ChannelSpace]:
        return [self.info[i] for i in {self.find(i) for i in self.parent}]


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """The fx graph of ``model`` with shapes; a model fx cannot trace is a :class:`PruneError`."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError on control flow, ...)
        raise PruneError(
            f"structured pruning needs a model torch.fx can trace; {type(model).__name__} cannot be traced "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); use unstructured (magnitude) pruning instead"
        ) from None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ShapeProp(graph).propagate(example)
    model.train(was_training)
    return graph


def channel_spaces(model: nn.Module, example: torch.Tensor) -> list[ChannelSpace]:
    """Every channel space of ``model`` (traced on ``example``, a batch of real inputs)."""
    graph = trace(model, example)
    modules = dict(graph.named_modules())
    spaces = _Spaces()
    space_of: dict[fx.Node, int] = {}

    def freeze(arg: object, why: str) -> None:
        for node in _nodes(arg):
            if node in space_of:
                spaces.get(space_of[node]).frozen.append(why)

    for node in graph.graph.nodes:
        target = modules.get(node.target) if node.op == "call_module" else None
        first = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
        src = space_of.get(first) if first is not None else None
        if node.op == "placeholder":
            space_of[node] = spaces.new()
            spaces.get(space_of[node]).frozen.append("model input")
        elif isinstance(target, PRUNABLE):
            if isinstance(target, (nn.Conv1d, nn.Conv2d)) and target.groups != 1:
                freeze(first, f"{node.target} is a grouped convolution")
                space_of[node] = spaces.new()
                spaces.get(space_of[node]).frozen.append(f"{node.target} is a grouped convolution")
                continue
            if src is not None:
                spaces.get(src).consumers.append(node.target)
            space_of[node] = spaces.new()
            spaces.get(space_of[node]).producers.append(node.target)
        elif isinstance(target, NORMS) and src is not None:
            spaces.get(src).norms.append(node.target)
            space_of[node] = src
        elif (isinstance(target, PASSTHROUGH_MODULES) or (node.op == "call_function" and node.target in PASSTHROUGH_FUNCTIONS)) and src is not None:
            space_of[node] = src
        elif (isinstance(target, nn.Flatten) or (node.op == "call_function" and node.target is torch.flatten)) and src is not None:
            shape = first.meta.get("tensor_meta").shape if first.meta.get("tensor_meta") is not None else None
            if shape is not None and len(shape) >= 2 and all(s == 1 for s in shape[2:]):
                space_of[node] = src  # flattening a 1×1 map keeps channel c at feature c
            else:
                freeze(first, f"{node.name} flattens a spatial map")
                space_of[node] = spaces.new()
                spaces.get(space_of[node]).frozen.append(f"{node.name} output")
        elif node.op == "call_function" and node.target in JOINS and all(isinstance(a, fx.Node) and a in space_of for a in node.args[:2]):
            space_of[node] = spaces.union(space_of[node.args[0]], space_of[node.args[1]])
        else:
            why = "model output" if node.op == "output" else f"{node.op} {node.target}"
            freeze(list(node.args) + list(node.kwargs.values()), why)
            if node.op != "output":
                space_of[node] = spaces.new()
                spaces.get(space_of[node]).frozen.append(f"output of {node.name}")
    return spaces.roots()


def _nodes(arg: object) -> Iterable[fx.Node]:
    if isinstance(arg, fx.Node):
        yield arg
    elif isinstance(arg, (list, tuple)):
        for a in arg:
            yield from _nodes(a)
    elif isinstance(arg, dict):
        for a in arg.values():
            yield from _nodes(a)


def _importance(model: nn.Module, space: ChannelSpace) -> torch.Tensor:
    """Per channel: the L1 norm of each producer's filter, normalised by that layer's mean, summed."""
    total = None
    for name in space.producers:
        w = model.get_submodule(name).weight.detach()
        norm = w.abs().flatten(1).sum(1)
        norm = norm / norm.mean().clamp_min(1e-12)
        total = norm if total is None else total + norm
    assert total is not None
    return total


def kept_channels(width: int, sparsity: float, multiple_of: int = 1) -> int:
    """How many of ``width`` channels stay: ``round(width × (1 − sparsity))``, then to the nearest multiple of
    ``multiple_of`` (at least one multiple, at most ``width``).

    Widths that are multiples of the SIMD width (8 fp32 lanes of AVX2, 16 of AVX-512) run faster in
    ONNX Runtime's and oneDNN's convolutions than narrower odd ones: on the demo student, 11/22/45
    channels measured slower than the unpruned 16/32/64 (benchmarks/compress/README.md).
    """
    keep = max(1, math.floor(width * (1.0 - sparsity) + 0.5))  # halves round up (Python's round() goes to even)
    if multiple_of > 1:
        keep = max(multiple_of, multiple_of * math.floor(keep / multiple_of + 0.5))
    return min(width, keep)


def channel_prune(model: nn.Module, sparsity: float, example: torch.Tensor, multiple_of: int = 1) -> dict[str, object]:
    """Remove the ``sparsity`` fraction of channels (at least one kept) from every prunable space, in place.

    ``multiple_of``: kept channels rounded to a multiple of it (:func:`kept_channels`).
    Returns what was done: channels kept per space and the spaces left whole, with why.
    """
    check_sparsity(sparsity)
    spaces = channel_spaces(model, example)
    kept, skipped = {}, {}
    for space in spaces:
        if not space.producers:
            continue
        label = "+".join(space.producers)
        if space.frozen:
            skipped[label] = sorted(set(space.frozen))[0]
            continue
        width = _out_channels(model.get_submodule(space.producers[0]))
        keep_n = kept_channels(width, sparsity, multiple_of)
        if keep_n >= width:
            skipped[label] = f"{width} channels: none to remove once rounded to a multiple of {multiple_of} (compress.prune.multiple_of)" if multiple_of > 1 else f"{width} channels: none to remove at this sparsity"
            continue
        keep = _importance(model, space).topk(keep_n).indices.sort().values
        for name in space.producers:
            replace_module(model, name, _slice_out(model.get_submodule(name), keep))
        for name in space.norms:
            replace_module(model, name, _slice_norm(model.get_submodule(name), keep))
        for name in space.consumers:
            replace_module(model, name, _slice_in(model.get_submodule(name), keep))
        kept[label] = f"{width} → {keep_n}"
    if not kept:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no conv or linear layer"
        raise PruneError(f"structured pruning at sparsity {sparsity} removes no channel of {type(model).__name__} ({reasons})")
    return {"channels": kept, "left_whole": skipped}


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` (a module path) of ``model`` is."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _new_like(m: nn.Module, in_n: int, out_n: int) -> nn.Module:
    w = m.weight
    if isinstance(m, nn.Linear):
        return nn.Linear(in_n, out_n, bias=m.bias is not None, device=w.device, dtype=w.dtype)
    return type(m)(in_n, out_n, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation, bias=m.bias is not None,
                   padding_mode=m.padding_mode, device=w.device, dtype=w.dtype)  # fmt: skip


def _slice_out(m: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = _new_like(m, m.weight.shape[1], len(keep))
    with torch.no_grad():
        new.weight.copy_(m.weight[keep])
        if m.bias is not None:
            new.bias.copy_(m.bias[keep])
    return new.train(m.training)


def _slice_in(m: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = _new_like(m, len(keep), m.weight.shape[0])
    with torch.no_grad():
        new.weight.copy_(m.weight[:, keep])
        if m.bias is not None:
            new.bias.copy_(m.bias)
    return new.train(m.training)


def _slice_norm(m: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = type(m)(len(keep), eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats,
                  device=m.running_mean.device if m.running_mean is not None else None)  # fmt: skip
    with torch.no_grad():
        if m.affine:
            new.weight.copy_(m.weight[keep])
            new.bias.copy_(m.bias[keep])
        if m.track_running_stats:
            new.running_mean.copy_(m.running_mean[keep])
            new.running_var.copy_(m.running_var[keep])
            new.num_batches_tracked.copy_(m.num_batches_tracked)
    return new.train(m.training)


def resize_to(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Shrink conv, linear and BN layers of a freshly built ``model`` to the shapes in ``state`` (in place).

    This is how a channel-pruned model is rebuilt from its safetensors file: the architecture comes
    from the config, the channel counts from the weights.
    """
    for name, m in list(model.named_modules()):
        key = f"{name}.weight" if name else "weight"
        if key not in state or not isinstance(m, (*PRUNABLE, *NORMS)):
            continue
        shape = state[key].shape
        if shape == m.weight.shape:
            continue
        if isinstance(m, NORMS):
            replace_module(model, name, type(m)(shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine, track_running_stats=m.track_running_stats))
        else:
            replace_module(model, name, _new_like(m, shape[1], shape[0]))
    return model
