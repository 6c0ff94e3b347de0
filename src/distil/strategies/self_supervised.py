"""Self-supervised distillation: a representation taught without labels, judged by a linear probe and k-NN.

Two teachers, one loop. The student sees one augmented view of each input, the teacher another
(:class:`~distil.engine.view_teacher.ViewTeacher`), and the objective's label-free terms — the
presets ``simclr``, ``byol``, ``barlow_twins``, ``seed``, ``dino`` or any ``distill.terms`` — pull the
student's embedding of its view towards the teacher's of the other:

- ``teacher: given`` — the config's teacher, frozen: SEED (Fang et al. 2021) and CompRess-style
  distillation of a representation into a smaller network on unlabeled inputs;
- ``teacher: ema`` — no teacher at all: the teacher is the exponential moving average of the student
  (BYOL, Grill et al. 2020; DINO, Caron et al. 2021), updated after every step with ``momentum``.

The inputs are the training inputs (their labels unused) and, with ``transfer``, more inputs without
labels. Training keeps the last epoch (there is no label to select an epoch by). Then the student is
probed: a logistic regression on its frozen embedding with the training labels (the *linear probe*,
which becomes the student's classifier, so the row's test accuracy is the probe's) and the weighted
k-NN accuracy (:mod:`distil.engine.probe`). With ``probe_baselines`` the run's teacher and scratch
student are probed the same way, so the table compares representations as well as classifiers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from distil.data import Split
from distil.data.tokens import is_tokens
from distil.data.views import Chain
from distil.engine.ema import EmaModel
from distil.engine.probe import install_probe, probe
from distil.engine.view_teacher import ViewTeacher
from distil.errors import ConfigError
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy
from distil.strategies.transfer import inputs_without_labels

#: the rows whose representations are probed beside the self-supervised student's
BASELINES = ("teacher", "student_scratch")


@register_strategy(
    "self_supervised",
    "SimCLR/BYOL/Barlow Twins/SEED/DINO terms across two views: a frozen teacher's representation, or the student's EMA, on inputs without labels; linear probe + k-NN",
    benchmark="benchmarks/self_supervised/README.md",
)
def prepare(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    if opts.teacher == "given" and ctx.teacher is None:
        raise ConfigError("strategy.teacher: 'given' distils the config's teacher, but the config has no teacher section; add one or set strategy.teacher: ema")
    views = opts.views.build() if opts.views is not None else None
    if views is not None and is_tokens(ctx.data.train.x) and views.enabled:
        raise ConfigError("strategy.views crop, flip and jitter images and signals; text inputs are token ids: remove strategy.views and set data.augment (mask, replace)")
    augment = Chain((ctx.augment, views)) if views is not None else ctx.augment
    if not augment.enabled:
        raise ConfigError(
            "strategy.views: a self-supervised run compares two augmented views of each input, but data.augment and strategy.views "
            "leave the input unchanged, so both views would be the same; set strategy.views (e.g. {scale: 0.35, jitter: 0.4, erase: 0.25}) "
            "or data.augment (crop_padding, hflip; text: mask, replace)"
        )
    train, sources = inputs_without_labels(ctx, training_inputs=True)
    ctx.say(f"self-supervised: {len(train):,} inputs without labels ({', '.join(f'{n:,} from {k}' for k, n in sources.items())})")
    student = ctx.build(cfg.student)
    # The EMA teacher is a copy of the student: the objective is built between two models of its architecture.
    objective = ctx.objective(student, ctx.teacher if opts.teacher == "given" else ctx.build(cfg.student), transfer=train, head_from_probe=True)
    method = cfg.distill.method if not cfg.distill.terms else "terms"

    def run(ctx: Context) -> None:
        data, device = ctx.data, ctx.device
        inputs = train.to(device)
        student.to(device)
        if opts.teacher == "ema":
            teacher_outputs = ViewTeacher(EmaModel(student, opts.momentum), inputs.x, augment, objective.teacher_taps, seed=ctx.seed + 1, follow=student)
        else:
            teacher_outputs = ViewTeacher(ctx.teacher, inputs.x, augment, objective.teacher_taps, seed=ctx.seed + 1)
        name = f"student_ssl_{opts.teacher}"
        no_validation = Split(data.val.x[:0], None if data.val.y is None else data.val.y[:0])  # keep the last epoch
        result = ctx.fit(name, student, objective, cfg.student, outputs=teacher_outputs, train=inputs, data=replace(data, val=no_validation), augment=augment)
        scores, fitted = probe(student, data.train.x, data.train.y, data.test.x, data.test.y, data.num_classes)
        install_probe(student, fitted)
        ctx.record(
            name, "student", f"self_supervised[{opts.teacher}]→{method}", student, cfg.student, result,
            **scores, teacher_outputs=teacher_outputs.info, views=augment_settings(augment), unlabeled_inputs=len(inputs),
        )  # fmt: skip
        ctx.save_objective(name, objective)
        if opts.probe_baselines:
            for baseline in BASELINES:
                model = ctx.models.get(baseline)
                if model is not None:
                    ctx.annotate(baseline, **probe(model, data.train.x, data.train.y, data.test.x, data.test.y, data.num_classes)[0])

    return run


def augment_settings(augment: Any) -> list[dict[str, Any]]:
    """What the views were, for the row (JSON-able)."""
    parts = augment.parts if isinstance(augment, Chain) else (augment,)
    return [{"kind": type(p).__name__, "settings": p.settings()} for p in parts if getattr(p, "enabled", False)]

