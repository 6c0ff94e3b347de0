"""Big Transfer: fine-tune a pre-trained model with the BiT-HyperRule, then distil it into a small student.

Kolesnikov, Beyer, Zhai, Puigcerver, Yung, Gelly & Houlsby 2020, "Big Transfer (BiT): General Visual
Representation Learning" (arXiv:1912.11370). Pre-train a ResNet-v2 with GroupNorm + Weight
Standardization (:mod:`distil.models.resnet_v2`) on a large labelled set — in distil an ordinary
``distil train`` run — then transfer it to a small downstream set: the head is replaced by a new one,
initialised to zero, and *everything* is fine-tuned with one fixed recipe, the BiT-HyperRule (§3.3 and
``bit_hyperrule.py`` of google-research/big_transfer), which picks only by the downstream set's size N:

    schedule   N < 20k: 500 steps;  N < 500k: 10k steps;  else 20k steps
               linear warm-up, then lr × 0.1 at each decay step (the code's supports:
               100 | 200, 300, 400 | 500;   500 | 3k, 6k, 9k | 10k;   500 | 6k, 12k, 18k | 20k)
    optimizer  SGD, momentum 0.9, lr 0.003 at batch 512, no weight decay
    MixUp      α = 0.1 when N ≥ 20k, none below (Zhang et al. 2018: x̃ = λx_i + (1−λ)x_j,
               loss λ·CE(ỹ, y_i) + (1−λ)·CE(ỹ, y_j), λ ~ Beta(α, α) once per batch)
    resolution images with area < 96² resized to 160 and randomly cropped to 128, larger ones
               448 → 384 (the paper; the code 512 → 480), plus random horizontal flips

The fine-tuned model is then the teacher of the config's student, distilled with ``distill.method``
on the same downstream data (and, with ``unlabeled``, also on the data's unlabeled inputs).

What distil does differently, and why:

- **Steps, not epochs.** The loop counts epochs, so the rule's steps become
  ``epochs = ⌈steps / ⌈N / B⌉⌉`` with ``B = min(batch_size, N)`` (a set smaller than the batch is one
  batch, 500 steps = 500 epochs); warm-up and decays keep their share of the schedule. The rows say so.
- **Learning rate and batch.** BiT keeps the batch at 512 (accumulating gradients if needed) with lr
  0.003. ``lr = base_lr × batch_size / 512``: a smaller ``batch_size`` scales it linearly (Goyal et al.
  2017), while a *set* smaller than the batch keeps 0.003 — its one batch is the full-data gradient that
  a batch of 512 estimates. distil's SGD is Nesterov's (BiT's is plain momentum), and its step decay
  takes effect at the decay step rather than one step after.
- **Resolution.** BiT's 160/128 upsampling is for natural images; on 28×28 data distil keeps the data's
  resolution (upsample with a loader option, e.g. digits' ``size: 28``, and crop with
  ``data.augment.crop_padding``). The rule still reports what BiT would use.
- **Validation.** As for every fit in distil, the epoch with the best validation accuracy is kept.

Rows: ``bit_finetuned`` (the teacher), ``bit_scratch`` (the same architecture from random weights, with
``strategy.scratch``'s settings), ``student_<method>`` (distilled from ``bit_finetuned``) and
``student_<method>_unlabeled``; the run's ``student_scratch`` is the student on the labels alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from distil.config import ModelConfig
from distil.data import Dataset
from distil.data.labels import labelled_then_unlabeled
from distil.engine.objective import Objective
from distil.errors import ConfigError, DataError
from distil.losses import Loss, Term
from distil.strategies.context import Context
from distil.strategies.frozen_backbone import last_linear, with_new_head
from distil.strategies.registry import Runner, register_strategy
from distil.weights import file_sha256, load_weights, read_state_dict

#: (N below which it applies, warm-up steps, decay steps, total steps): big_transfer's bit_hyperrule.get_schedule
SCHEDULES: tuple[tuple[float, int, tuple[int, ...], int], ...] = (
    (20_000, 100, (200, 300, 400), 500),
    (500_000, 500, (3_000, 6_000, 9_000), 10_000),
    (math.inf, 500, (6_000, 12_000, 18_000), 20_000),
)
#: the batch at which BiT's learning rate is given
BIT_BATCH = 512
#: sets with at least this many training samples are fine-tuned with MixUp α = 0.1
MIXUP_FROM = 20_000


@dataclass(frozen=True)
class HyperRule:
    """The BiT-HyperRule's choices for one downstream set (in steps of the rule's batch)."""

    steps: int
    warmup: int
    decays: tuple[int, ...]
    mixup: float
    #: (resize, crop) BiT would use for this image size; distil keeps the data's resolution (module doc)
    resolution: tuple[int, int] | None

    def scaled(self, steps: int) -> HyperRule:
        """The same schedule stretched to ``steps`` (warm-up and decays keep their share)."""
        share = steps / self.steps
        return replace(self, steps=steps, warmup=round(self.warmup * share), decays=tuple(round(d * share) for d in self.decays))

    def lr_factor(self, step: int) -> float:
        """The factor on the base lr at ``step`` (0-based): ``step / warmup`` during warm-up, then 0.1 per decay passed."""
        if step < self.warmup:
            return step / self.warmup
        return 0.1 ** sum(step >= d for d in self.decays)


def bit_hyperrule(train_size: int, image_size: tuple[int, ...] | None = None) -> HyperRule:
    """The BiT-HyperRule (Kolesnikov et al. 2020, §3.3) for a downstream set of ``train_size`` labelled
    examples: schedule length and decays, MixUp α, and the resolution for ``image_size`` (H, W) if given."""
    if train_size < 1:
        raise ValueError(f"the BiT-HyperRule needs a non-empty training set, got {train_size} samples")
    warmup, decays, steps = next((w, d, s) for below, w, d, s in SCHEDULES if train_size < below)
    resolution = None
    if image_size is not None:
        resolution = (160, 128) if math.prod(image_size[-2:]) < 96 * 96 else (448, 384)
    return HyperRule(steps=steps, warmup=warmup, decays=decays, mixup=0.1 if train_size >= MIXUP_FROM else 0.0, resolution=resolution)


def rule_config(rule: HyperRule, arch: str, kwargs: dict, train_size: int, batch_size: int, base_lr: float) -> ModelConfig:
    """The rule as distil's training settings: epochs from steps, step decay, linear warm-up, SGD 0.9, no weight decay.

    distil's warm-up is a fraction ``w`` of all steps and its milestones are fractions of the steps after
    it, so a decay at step ``d`` of ``S`` is the milestone ``(d/S − w) / (1 − w)``.
    """
    batch = min(batch_size, train_size)
    per_epoch = math.ceil(train_size / batch)
    epochs = math.ceil(rule.steps / per_epoch)
    w = rule.warmup / rule.steps
    milestones = [(d / rule.steps - w) / (1 - w) for d in rule.decays]
    return ModelConfig(
        arch=arch, kwargs=kwargs, epochs=epochs, batch_size=batch, optimizer="sgd", lr=base_lr * batch_size / BIT_BATCH, momentum=0.9,
        weight_decay=0.0, schedule="step", milestones=milestones, gamma=0.1, warmup=w,
    )  # fmt: skip


class MixUp(nn.Module):
    """``net`` that, in training mode, sees each batch mixed with a permutation of itself (Zhang et al. 2018):
    ``x̃ = λ·x + (1 − λ)·x[π]``, one ``λ ~ Beta(α, α)`` per batch (as BiT), drawn from torch's global RNG
    (so a resumed run draws the same). :class:`MixUpCE` reads ``λ`` and ``π`` of the last batch."""

    def __init__(self, net: nn.Module, alpha: float) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"MixUp needs alpha > 0, got {alpha}")
        self.net = net
        self.alpha = alpha
        self.last: tuple[float, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
            perm = torch.randperm(len(x)).to(x.device)
            self.last = (lam, perm)
            x = lam * x + (1.0 - lam) * x[perm]
        return self.net(x)


class MixUpCE(Loss):
    """MixUp's task loss: ``λ·CE(s, y) + (1 − λ)·CE(s, y[π])`` with the ``λ, π`` that mixed this batch."""

    name = "mixup_ce"
    uses_teacher = False
    uses_target = True

    def __init__(self, mixup: MixUp) -> None:
        super().__init__()
        self._mixup = (mixup,)  # a reference, not a submodule: the model's parameters belong to the model

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None, *, target: torch.Tensor) -> torch.Tensor:
        last = self._mixup[0].last
        if last is None:
            raise RuntimeError("MixUpCE: the model has not mixed a batch yet (call it in training mode first)")
        lam, perm = last
        return lam * F.cross_entropy(student, target) + (1.0 - lam) * F.cross_entropy(student, target[perm])


def pretrained_with_new_head(ctx: Context, cfg: ModelConfig, path: str, sha256: str | None, head: str | None, data: Dataset) -> tuple[nn.Module, str]:
    """The upstream model from ``path`` (its class count read from the head's weight), checked key by key
    against ``cfg``'s architecture, with its head replaced by a zero-initialised one for ``data``'s classes (BiT)."""
    state = read_state_dict(path)
    probe = ctx.build(cfg, data=data)
    head = head or last_linear(probe, who="strategy bit")
    key = f"{head}.weight"
    if key not in state:
        raise ConfigError(
            f"strategy bit: weights file {path} has no {key} (the head of {cfg.arch}); it was not made by this architecture "
            f"(its first keys: {', '.join(list(state)[:5])}); check strategy.arch, strategy.kwargs and strategy.head"
        )
    upstream = ctx.build(cfg, data=replace(data, num_classes=int(state[key].shape[0])))
    load_weights(upstream, path, sha256)  # every missing, unexpected or mis-shaped key named
    net = with_new_head(upstream, head, data.num_classes, who="strategy bit")
    fc = net.get_submodule(head)
    nn.init.zeros_(fc.weight)
    nn.init.zeros_(fc.bias)
    return net, head


def schedule(rule: HyperRule, cfg: ModelConfig, train_size: int) -> str:
    """The rule in words, as the row and the console show it (steps made of epochs: the loop counts epochs)."""
    per_epoch = math.ceil(train_size / cfg.batch_size)
    decays = "/".join(map(str, rule.decays))
    mix = f"MixUp α={rule.mixup:g}" if rule.mixup else "no MixUp"
    return (
        f"{cfg.epochs * per_epoch} steps ({cfg.epochs} epochs × {per_epoch} batch{'es' if per_epoch > 1 else ''} of ≤{cfg.batch_size}), "
        f"lr {cfg.lr:g}, warm-up {rule.warmup} steps, ×0.1 at {decays}, {mix}"
    )


@register_strategy("bit", "Kolesnikov 2020 Big Transfer: pre-trained weights, new zero head, fine-tuned with the BiT-HyperRule (steps, MixUp by data size); then the student's teacher; no teacher needed", benchmark="benchmarks/bit/README.md")
def prepare(ctx: Context) -> Runner:
    opts, cfg, data = ctx.options, ctx.config, ctx.data
    if data.train.y is None or data.train.y.dim() != 1:
        raise DataError(f"strategy bit: fine-tuning needs one label per training sample; {data.name!r} has none")
    model_cfg = opts.model()
    net, head = pretrained_with_new_head(ctx, model_cfg, opts.weights, opts.sha256, opts.head, data)
    n = len(data.train)
    rule = bit_hyperrule(n, data.input_shape[1:] if len(data.input_shape) == 3 else None)
    if opts.steps is not None:
        rule = rule.scaled(opts.steps)
    if opts.mixup is not None:
        rule = replace(rule, mixup=opts.mixup)
    tune_cfg = rule_config(rule, opts.arch, opts.kwargs, n, opts.batch_size, opts.base_lr)
    described = schedule(rule, tune_cfg, n)
    method = f"BiT-HyperRule, {tune_cfg.epochs * math.ceil(n / tune_cfg.batch_size)} steps"
    tuned: nn.Module = MixUp(net, rule.mixup) if rule.mixup else net
    tune_objective = Objective([Term(MixUpCE(tuned))]) if isinstance(tuned, MixUp) else None
    scratch_cfg = ModelConfig(arch=opts.arch, kwargs=opts.kwargs, **opts.scratch.model_dump()) if opts.scratch is not None else None
    scratch = ctx.build(scratch_cfg) if scratch_cfg is not None else None
    students = {f"student_{cfg.distill.method}": data.train}
    if opts.unlabeled and data.unlabeled is not None and len(data.unlabeled):
        students[f"student_{cfg.distill.method}_unlabeled"] = labelled_then_unlabeled(data.train, data.unlabeled)
    elif opts.unlabeled:
        ctx.say("note: strategy bit: unlabeled is on but the data have no unlabeled inputs (set data.labels_per_class); no student_*_unlabeled row")
    distilled = {name: ctx.build(cfg.student) for name in students}
    objectives = {name: ctx.objective(student, net, train=students[name]) for name, student in distilled.items()}
    upstream = {"weights": str(opts.weights), "sha256": file_sha256(opts.weights), "arch": opts.arch, "head": head}
    ctx.say(f"strategy bit: BiT-HyperRule for {n} training samples: {described}; BiT would resize to {rule.resolution}, kept at {tuple(data.input_shape[1:])}")

    def run(ctx: Context) -> None:
        torch.manual_seed(ctx.seed)  # MixUp's draws
        tuned.to(ctx.device)
        result = ctx.fit("bit_finetuned", tuned, tune_objective, tune_cfg) if tune_objective is not None else ctx.train_on_labels("bit_finetuned", tuned, tune_cfg)
        ctx.record("bit_finetuned", "teacher", method, net, tune_cfg, result, schedule=described, hyperrule=asdict(rule), upstream=upstream)
        if scratch is not None and scratch_cfg is not None:
            ctx.record("bit_scratch", "baseline", "same architecture from random weights", scratch, scratch_cfg, ctx.train_on_labels("bit_scratch", scratch, scratch_cfg))
        for name, student in distilled.items():
            train = students[name].to(ctx.device)
            ctx.distil(name, f"{cfg.distill.method} from bit_finetuned", student, cfg.student, net, objectives[name], train=train)

    return run
