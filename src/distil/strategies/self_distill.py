"""Self-distillation: born-again networks and teacher-free KD.

Furlanello et al. 2018, "Born-Again Neural Networks": generation 0 is the student architecture
trained on the labels (the run's ``student_scratch``); generation k+1, the same architecture from a
new initialisation (seed + k + 1), is distilled from generation k with ``distill.method``, for K
generations.

Yuan, Tay, Li, Wang & Feng 2020, "Revisiting Knowledge Distillation via Label Smoothing
Regularization" (Tf-KD_reg): no teacher network; a *virtual teacher* puts probability ``a`` on the
true class and ``(1 − a)/(K − 1)`` on every other,

    p^d(c | y) = a if c = y else (1 − a) / (K − 1),

and the student is trained with ``distill.method``'s terms against it (default ``kd``: 0.9 · T² ·
KL(softmax(z^d/T) ‖ softmax(s/T)) + 0.1 · CE). The virtual teacher's logits are ``z^d = log p^d``,
so ``softmax(z^d) = p^d`` and any logit loss can read it (the authors' code instead feeds the
probabilities themselves to a softmax at temperature T; with logits ``log p^d`` the same KD term
works for a real and a virtual teacher).
"""

from __future__ import annotations

import torch

from distil.engine.taps import LOGITS
from distil.errors import ConfigError
from distil.losses import LOSSES
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


class VirtualTeacher:
    """Teacher outputs of Tf-KD's virtual teacher for training samples ``index`` (needs their labels)."""

    def __init__(self, labels: torch.Tensor, num_classes: int, correct_prob: float) -> None:
        if num_classes < 2:
            raise ValueError("a virtual teacher needs at least two classes")
        table = torch.full((num_classes, num_classes), (1.0 - correct_prob) / (num_classes - 1), device=labels.device)
        table.fill_diagonal_(correct_prob)
        self.logits = table.log()[labels]

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {LOGITS: self.logits[index]}


@register_strategy("born_again", "Furlanello 2018 born-again networks: generation k (same arch) teaches generation k+1, K generations; no teacher needed", benchmark="MNIST-1D", distributed=True, per_token=True, paired="students")
def prepare_born_again(ctx: Context) -> Runner:
    cfg, generations = ctx.config, ctx.options.generations
    models = [ctx.build(cfg.student, ctx.seed + k) for k in range(generations + 1)]
    objectives = [ctx.objective(models[k], models[k - 1]) for k in range(1, generations + 1)]

    def run(ctx: Context) -> None:
        previous = ctx.models.get("student_scratch")  # generation 0 is the scratch student
        if previous is None:
            previous = models[0]
            ctx.record("student_ban0", "student", "born_again[0]", previous, cfg.student, ctx.train_on_labels("student_ban0", previous, cfg.student))
        for k in range(1, generations + 1):
            ctx.distil(f"student_ban{k}", f"born_again[{k}]", models[k], cfg.student, previous, objectives[k - 1], seed=ctx.seed + k)
            previous = models[k]

    return run


@register_strategy("tf_kd", "Yuan 2020 teacher-free KD: a virtual teacher with logits log p^d, p^d(y)=correct_prob, the rest uniform; no teacher needed", benchmark="MNIST-1D", distributed=True, paired=True)
def prepare_tf_kd(ctx: Context) -> Runner:
    cfg = ctx.config
    if ctx.data.train.y is None:
        raise ConfigError("strategy tf_kd: the virtual teacher is made from the labels, but the training data have none")
    for spec in cfg.distill.term_specs():
        if LOSSES[spec.loss].uses_teacher and (spec.student != LOGITS or (spec.teacher or LOGITS) != LOGITS):
            raise ConfigError(f"strategy tf_kd: the virtual teacher has only logits, but term {spec.loss} reads {spec.teacher or spec.student}; use a logit method (kd, dkd, dist, ...)")
    student = ctx.build(cfg.student)
    objective = ctx.objective(student, None)

    def run(ctx: Context) -> None:
        teacher = VirtualTeacher(ctx.data.train.y, ctx.data.num_classes, ctx.options.correct_prob)
        name = f"student_tfkd_{cfg.distill.method}"
        result = ctx.fit(name, student, objective, cfg.student, outputs=teacher)
        ctx.record(name, "student", f"tf_kd→{cfg.distill.method}", student, cfg.student, result, teacher_outputs={"kind": "virtual", "correct_prob": ctx.options.correct_prob})

    return run
