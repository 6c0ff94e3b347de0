"""Frozen-backbone transfer: a trained teacher's features reused for a new label set.

The "frozen parameters" transfer of the seed literature (e.g. Yosinski et al. 2014, "How
transferable are features in deep neural networks?"; Donahue et al. 2014, DeCAF): copy the trained
network, replace its head (the last ``nn.Linear`` by default) by a new one with one output per new
class, and train only the head — the backbone's parameters *and* its batch-norm statistics stay
bit-identical (:class:`FrozenBackbone` keeps the backbone in eval mode). Optionally, fine-tune
everything afterwards with its own (usually smaller) learning rate.

The new task is ``strategy.data`` (default: the config's data) with labels optionally mapped
through ``label_map`` (old class → new class, e.g. parity), so the demo data give a new label set.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from distil.config import ModelConfig
from distil.data import Dataset, Split
from distil.errors import ConfigError, DataError
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


class FrozenBackbone(nn.Module):
    """``net`` with only the module at ``head`` trainable while :attr:`frozen`; the rest stays in eval mode."""

    def __init__(self, net: nn.Module, head: str) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.frozen = True
        self.freeze(True)

    def freeze(self, frozen: bool) -> None:
        self.frozen = frozen
        for name, p in self.net.named_parameters():
            p.requires_grad_(not frozen or name.startswith(self.head + "."))
        self.train(self.training)

    def train(self, mode: bool = True) -> FrozenBackbone:
        super().train(mode)
        if self.frozen:  # batch-norm statistics (and dropout) of the backbone must not move either
            self.net.eval()
            self.net.get_submodule(self.head).train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def last_linear(model: nn.Module, who: str = "strategy frozen_backbone") -> str:
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{who}: {type(model).__name__} has no nn.Linear head; name it with strategy.head")
    return linears[-1]


def with_new_head(model: nn.Module, head: str, num_classes: int, who: str = "strategy frozen_backbone") -> nn.Module:
    """A deep copy of ``model`` whose ``head`` (an ``nn.Linear``) is replaced by a fresh one for ``num_classes``."""
    net = copy.deepcopy(model)
    try:
        old = net.get_submodule(head)
    except AttributeError:
        raise ConfigError(f"{who}: the model has no module {head!r}") from None
    if not isinstance(old, nn.Linear):
        raise ConfigError(f"{who}: head {head!r} is a {type(old).__name__}; it must be an nn.Linear")
    parent, _, leaf = head.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Linear(old.in_features, num_classes).to(old.weight.device))
    return net


def relabelled(data: Dataset, label_map: list[int]) -> Dataset:
    """``data`` with every label y replaced by ``label_map[y]``: a new label set on the same inputs."""
    if len(label_map) != data.num_classes:
        raise ConfigError(f"strategy frozen_backbone: label_map has {len(label_map)} entries but {data.name!r} has {data.num_classes} classes (one new label per old class)")
    k = max(label_map) + 1
    missing = sorted(set(range(k)) - set(label_map))
    if missing:
        raise ConfigError(f"strategy frozen_backbone: label_map uses new labels up to {k - 1} but never {missing}; new labels must be 0..K-1")
    table = torch.tensor(label_map)

    def split(s: Split) -> Split:
        return Split(s.x, table.to(s.y.device)[s.y])

    return replace(data, train=split(data.train), val=split(data.val), test=split(data.test), num_classes=k, class_names=tuple(str(c) for c in range(k)))


@register_strategy("frozen_backbone", "transfer: the trained teacher's backbone frozen (bit-identical), a new head for a new label set, optional fine-tuning", benchmark="MNIST-1D")
def prepare(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    data = ctx.data
    if opts.data is not None:
        d = opts.data
        data = d.load(ctx.seed)
        if data.input_shape != ctx.data.input_shape:
            raise DataError(f"strategy frozen_backbone: data {d.name!r} has inputs of shape {data.input_shape}, the teacher's {ctx.data.input_shape}")
    if opts.label_map is not None:
        data = relabelled(data, opts.label_map)
    head = opts.head or last_linear(ctx.teacher)
    with_new_head(ctx.teacher, head, data.num_classes)  # checks the head now
    arch = f"{cfg.teacher.arch}+head"
    head_cfg = ModelConfig(arch=arch, **opts.train.model_dump())
    tune_cfg = ModelConfig(arch=arch, **opts.finetune.model_dump()) if opts.finetune else None

    def run(ctx: Context) -> None:
        task = replace(data, train=data.train.to(ctx.device), val=data.val.to(ctx.device), test=data.test.to(ctx.device))
        torch.manual_seed(ctx.seed)
        model = FrozenBackbone(with_new_head(ctx.teacher, head, task.num_classes), head).to(ctx.device)
        result = ctx.train_on_labels("transfer_frozen", model, head_cfg, data=task)
        ctx.record("transfer_frozen", "transfer", f"frozen backbone, new {head}", model, head_cfg, result, data=task)
        if tune_cfg is not None:
            model.freeze(False)
            result = ctx.train_on_labels("transfer_finetuned", model, tune_cfg, data=task)
            ctx.record("transfer_finetuned", "transfer", "fine-tuned", model, tune_cfg, result, data=task)

    return run
