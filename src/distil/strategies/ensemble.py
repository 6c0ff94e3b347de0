"""Teacher ensembles: N teachers (architectures or seeds) distilled into one student.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", §3 and §4: the soft
targets of an ensemble are the arithmetic mean of its members' tempered distributions,

    p̄_T(x) = Σ_i w_i · softmax(z_i(x) / T),   Σ_i w_i = 1,

and the student minimises ``T² · KL(p̄_T ‖ softmax(s/T))``. :class:`Ensemble` (in
:mod:`distil.models.ensemble`, whose maths the translation ensemble shares) is an ``nn.Module`` whose
logits are ``T · log p̄_T``: since ``softmax(T · log p̄_T / T) = p̄_T`` exactly, the ordinary
``KD(T)`` term (cached once like any teacher's logits) computes precisely that loss. With T = 1 they
are the log of the averaged probabilities, i.e. the usual ensemble prediction (its accuracy is the
``teacher_ensemble`` row). ``combine: logits`` averages logits instead (a geometric mean of the
distributions, renormalised).

Feature and relation terms (``distill.method: crd``, ``at``, ...) are made once per member and summed,
as in CRD's ensemble variant (Tian et al. 2020, CRD-EN): the student's tap is compared with
``members.<i>.<tap>`` of each member; each term gets its own loss (and connector or CRD heads).

Paired data (cross-modal): every member is built, trained and measured on the teacher's inputs
(``data.for_teacher()``), and the ensemble's outputs come from the teacher's input of each row.

Transfer set (Hinton et al. 2015 §2: the soft targets carry most of the ensemble's knowledge, and a
transfer set need not be labelled): ``transfer`` adds inputs without labels (and the data's unlabeled
pool, if any) to the student's training split. The labelled training rows keep their labels; the
transfer rows carry the label −100, which CE leaves out, so with ``KD`` at weight α and ``CE`` at
1 − α the student minimises, over a batch b whose labelled rows are L_b,

    α · T² · 1/|b| Σ_{i ∈ b} KL(p̄_T(x_i) ‖ softmax(s(x_i)/T)) + (1 − α) · 1/|L_b| Σ_{l ∈ L_b} CE(s(x_l), y_l).

The members themselves train on the labelled rows only. With ``baseline: true`` a transfer set also
adds ``student_transfer_<method>``: the same student, rows and objective with the first teacher alone
as the teacher, so the ensemble's own contribution is ``student_ensemble_<method>`` −
``student_transfer_<method>`` (the extra inputs help either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from distil.config import ModelConfig
from distil.data import Split
from distil.data.labels import labelled_then_unlabeled
from distil.engine.objective import Objective
from distil.engine.taps import LOGITS
from distil.errors import ConfigError, ModelError
from distil.losses import LOSSES
from distil.models.ensemble import Ensemble
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy
from distil.strategies.transfer import inputs_without_labels
from distil.weights import load_weights


def check_class_counts(members: Sequence[nn.Module], names: Sequence[str], probe: torch.Tensor, num_classes: int) -> None:
    """Every member must output one logit per class of the data; otherwise their targets cannot be averaged."""
    for member, name in zip(members, names):
        was = member.training
        member.eval()
        with torch.no_grad():
            out = member(probe)
        member.train(was)
        if out.dim() != 2 or out.shape[1] != num_classes:
            raise ConfigError(
                f"strategy ensemble: {name} outputs {tuple(out.shape[1:])} logits per sample but the data have {num_classes} classes; "
                "every member must classify the same classes"
            )


def ensemble_objective(ctx: Context, student: nn.Module, ensemble: Ensemble, train: Split | None = None) -> Objective:
    """Logit terms read the ensemble's combined logits; feature terms are repeated per member (each
    reading ``members.<i>.<tap>``, a group resolved on that member) and summed. ``train``: the
    student's training split when it is not the data's (labelled rows and a transfer set)."""
    specs = ctx.config.distill.term_specs()
    on_logits = [s for s in specs if not LOSSES[s.loss].uses_teacher or (s.student == LOGITS and (s.teacher or LOGITS) == LOGITS)]
    on_features = [s for s in specs if s not in on_logits]
    per_member = [replace(s, teacher=f"members.{i}.{s.teacher or s.student}") for i in range(len(ensemble.members)) for s in on_features]
    return ctx.objective(student, ensemble, terms=on_logits + per_member, train=train)


def with_transfer_set(ctx: Context) -> Split | None:
    """The labelled training rows followed by ``strategy.transfer``'s inputs (and the data's unlabeled
    pool) labelled −100, on the CPU; ``None`` without a transfer set."""
    if ctx.options.transfer is None:
        return None
    if ctx.data.paired:
        raise ConfigError(f"strategy ensemble: transfer adds inputs of one kind, but {ctx.data.name!r} is paired (the teacher sees other inputs than the student); remove strategy.transfer")
    if ctx.session.dist is not None:
        raise ConfigError("strategy ensemble: transfer inputs are not sharded across processes yet; run an ensemble with strategy.transfer in one process (no torchrun)")
    pool, sources = inputs_without_labels(ctx, training_inputs=False)
    ctx.say(f"ensemble: the student learns from {len(ctx.data.train):,} labelled rows + {len(pool):,} unlabeled inputs ({', '.join(f'{n:,} from {k}' for k, n in sources.items())})")
    return labelled_then_unlabeled(ctx.data.train, pool)


@register_strategy("ensemble", "Hinton 2015 §3: `teacher` + `teachers` (archs or seeds), soft targets = weighted mean of softmax(z/T); feature terms per member, summed (CRD-EN)", benchmark="MNIST-1D", distributed=True, paired=True)
def prepare(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    teacher_data = ctx.data.for_teacher()  # paired data: the members see the teacher's inputs
    configs = [cfg.teacher, *opts.teachers]
    names = ["teacher"] + [f"teacher_{i}" for i in range(1, len(configs))]
    seeds = [cfg.seed] + [t.seed if t.seed is not None else cfg.seed + i for i, t in enumerate(opts.teachers, start=1)]
    members: list[nn.Module] = [ctx.teacher]
    for name, member_cfg, seed in zip(names[1:], opts.teachers, seeds[1:]):
        member = ctx.build(member_cfg, seed, data=teacher_data)
        if member_cfg.weights:
            try:
                load_weights(member, member_cfg.weights, member_cfg.sha256)
            except ModelError as err:  # e.g. weights of a model with another number of classes
                raise ModelError(f"strategy ensemble: {name} ({member_cfg.arch}, {ctx.data.num_classes} classes): {err}") from None
        members.append(member)
    check_class_counts(members, [f"{n} ({c.arch})" for n, c in zip(names, configs)], teacher_data.train.x[:2], ctx.data.num_classes)
    student = ctx.build(cfg.student)
    ensemble = Ensemble(members, opts.weights, opts.combine)
    train = with_transfer_set(ctx)
    objective = ensemble_objective(ctx, student, ensemble, train)
    # With a transfer set and baseline: the same rows and objective from the first teacher alone.
    single = ctx.build(cfg.student) if train is not None and opts.baseline else None
    single_objective = ctx.objective(single, ctx.teacher, train=train) if single is not None else None
    target = ensemble.at_temperature(objective.temperature)
    arch = f"ensemble({', '.join(c.arch for c in configs)})"

    def run(ctx: Context) -> None:
        on_device = ctx.data.for_teacher()  # the runner's data are on the device
        for name, member, member_cfg, seed in zip(names[1:], members[1:], configs[1:], seeds[1:]):
            member.to(ctx.device)
            if member_cfg.weights:
                ctx.record(name, "teacher", "loaded", member, member_cfg, None, data=on_device)
            else:
                result = ctx.train_on_labels(name, member, member_cfg, seed=seed, data=on_device)
                ctx.record(name, "teacher", "trained", member, member_cfg, result, data=on_device)
        ensemble.to(ctx.device)
        ctx.record("teacher_ensemble", "ensemble", f"mean of {len(members)} ({opts.combine})", ensemble, ModelConfig(arch=arch), None, data=on_device)
        rows = None if train is None else train.to(ctx.device)
        extra = "" if train is None else "+transfer"
        ctx.distil(f"student_ensemble_{cfg.distill.method}", f"ensemble{extra}→{cfg.distill.method}", student, cfg.student, target, objective, train=rows)
        if single is not None and single_objective is not None and ctx.teacher is not None:
            ctx.distil(f"student_transfer_{cfg.distill.method}", f"teacher+transfer→{cfg.distill.method}", single, cfg.student, ctx.teacher, single_objective, train=rows)

    return run
