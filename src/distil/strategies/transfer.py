"""Unlabeled transfer sets and Noisy Student.

Hinton et al. 2015 §2: the student can be trained on a *transfer set* that need not be labelled —
its targets are the teacher's soft targets. Here the training split is replaced by the transfer set
(optionally together with the labelled training inputs, labels unused) and the objective keeps only
the method's teacher terms; validation (and the best epoch) still uses the labelled validation
split. The teacher's outputs are cached once when the inputs are not augmented, else computed on
the fly.

Xie, Luong, Hovy & Le 2020, "Self-training with Noisy Student": a clean (un-noised, eval-mode)
teacher labels the transfer set once; a student at least as large is trained on those soft targets
with noise — input noise, the data's augmentation, dropout — and becomes the teacher of the next
iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distil.data import Augment, Split
from distil.data.tokens import concat, is_tokens
from distil.data.unlabeled import load_unlabeled
from distil.engine.teacher_outputs import teacher_outputs
from distil.errors import ConfigError
from distil.models import count_parameters
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


def transfer_split(ctx: Context) -> Split:
    """The transfer set of ``strategy.transfer`` (CPU, unlabeled), with the training inputs when asked."""
    t = ctx.options.transfer
    extra = load_unlabeled(t.name, ctx.data, path=t.path, max_samples=t.max_samples, **t.options)
    x = concat([ctx.data.train.x, extra.x]) if t.include_train else extra.x
    ctx.say(f"transfer set: {len(extra)} unlabeled samples from {t.name}" + (f" + {len(ctx.data.train)} training inputs" if t.include_train else ""))
    return Split(x)


def inputs_without_labels(ctx: Context, *, training_inputs: bool) -> tuple[Split, dict[str, int]]:
    """The inputs a strategy learns from without labels (CPU), with how many came from where: the training
    inputs (``training_inputs``, their labels unused; ``transfer.include_train: false`` leaves them out),
    the data's unlabeled pool (``data.labels_per_class``) and ``strategy.transfer``'s inputs."""
    parts: dict[str, torch.Tensor] = {}
    t = ctx.options.transfer
    if training_inputs and (t is None or t.include_train):
        parts["train"] = ctx.data.train.x
    if ctx.data.unlabeled is not None and len(ctx.data.unlabeled):
        parts["data"] = ctx.data.unlabeled.x
    if t is not None:
        parts["transfer"] = load_unlabeled(t.name, ctx.data, path=t.path, max_samples=t.max_samples, **t.options).x
    if not parts:
        raise ConfigError(
            f"strategy {ctx.options.name}: there are no unlabeled inputs; set data.labels_per_class or data.labelled_fraction "
            "(the other training samples lose their labels) or strategy.transfer (more inputs without labels)"
        )
    x = concat(list(parts.values())) if len(parts) > 1 else next(iter(parts.values()))
    return Split(x), {source: len(v) for source, v in parts.items()}


@dataclass(frozen=True)
class NoisyInputs:
    """The data's batch augmentation followed by Gaussian input noise of standard deviation ``std``."""

    base: Augment
    std: float

    @property
    def enabled(self) -> bool:
        return self.base.enabled or self.std > 0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self.base(x, generator)
        if self.std > 0:
            x = x + self.std * torch.randn(x.shape, generator=generator).to(x.device)
        return x


@register_strategy("unlabeled", "Hinton 2015 §2 transfer set: distil on inputs without labels (npz with only x, a folder, generated MNIST-1D), teacher soft targets only", benchmark="MNIST-1D", per_token=True)
def prepare_unlabeled(ctx: Context) -> Runner:
    cfg = ctx.config
    transfer = transfer_split(ctx)
    student = ctx.build(cfg.student)
    objective = ctx.objective(student, ctx.teacher, transfer=transfer)

    def run(ctx: Context) -> None:
        name = f"student_unlabeled_{cfg.distill.method}"
        ctx.distil(name, f"unlabeled→{cfg.distill.method}", student, cfg.student, ctx.teacher, objective, train=transfer.to(ctx.device))

    return run


@register_strategy("noisy_student", "Xie 2020 Noisy Student: clean teacher labels the transfer set; noised student (input noise, augmentation, dropout) becomes the next teacher", benchmark="MNIST-1D", per_token=True)
def prepare_noisy_student(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    transfer = transfer_split(ctx)
    if opts.input_noise > 0 and is_tokens(transfer.x):
        raise ConfigError(
            f"strategy.input_noise: {opts.input_noise} adds Gaussian noise to inputs, but text inputs are token ids; "
            "set input_noise: 0 and noise the student with data.augment (mask, replace, ngram)"
        )
    extra = {"dropout": opts.dropout} if opts.dropout is not None else {}
    students = [ctx.build(cfg.student, ctx.seed + k, **extra) for k in range(1, opts.iterations + 1)]
    teachers = [ctx.teacher, *students[:-1]]
    if count_parameters(students[0]) < count_parameters(ctx.teacher):
        ctx.say("note: Noisy Student uses a student as large as the teacher or larger; this one is smaller")
    objectives = [ctx.objective(s, t, transfer=transfer) for s, t in zip(students, teachers)]

    def run(ctx: Context) -> None:
        train = transfer.to(ctx.device)
        noise = NoisyInputs(ctx.augment, opts.input_noise)
        teacher = ctx.teacher
        for k, (student, objective) in enumerate(zip(students, objectives), start=1):
            name = f"student_noisy_{k}"
            # The teacher labels clean inputs once (eval mode: no dropout); only the student is noised.
            outputs = teacher_outputs(teacher, train.x, False, objective.teacher_taps)
            result = ctx.fit(name, student, objective, cfg.student, outputs=outputs, train=train, seed=ctx.seed + k, augment=noise)
            ctx.record(name, "student", f"noisy_student[{k}]", student, cfg.student, result, teacher_outputs={"kind": "exact (clean inputs)", "taps": sorted(objective.teacher_taps)})
            ctx.save_objective(name, objective)
            teacher = student

    return run
