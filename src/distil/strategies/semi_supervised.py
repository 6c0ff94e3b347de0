"""Semi-supervised distillation: FixMatch with a pseudo-labeller of choice, in the one training loop.

Sohn et al. 2020, "FixMatch": on a batch of B labelled and μB unlabeled samples,

    L = CE(s(weak(x_l)), y) + λ_u · 1/μB Σ_u 1[max softmax(t_u/T) ≥ τ] · CE(s(strong(x_u)), argmax t_u),

where ``t_u`` are the pseudo-labeller's logits on a *weak* view of the unlabeled sample (flip and
crop) and ``s`` the student's on a *strong* view (RandAugment + Cutout in the paper). Here, in one
loop over one mixed split, the student sees the strong view of *every* row, so its CE term reads the
labelled rows strongly augmented too, and the FixMatch term averages over all B + μB rows (the
labelled rows' pseudo-labels included): what is computed is

    L = 1/|L_b| Σ_{l ∈ L_b} CE(s(strong(x_l)), y_l) + λ_u · 1/|b| Σ_{i ∈ b} 1[max softmax(t_i/T) ≥ τ] · CE(s(strong(x_i)), argmax t_i)

for a batch b whose labelled rows are L_b. ``targets: soft`` replaces FixMatch's term by the labeller's
whole distribution on every row, Hinton et al. 2015's KD at temperature T (no threshold):

    L = 1/|L_b| Σ_{l ∈ L_b} CE(s(x_l), y_l) + λ_u · T² · 1/|b| Σ_{i ∈ b} KL(softmax(t_i/T) ‖ softmax(s_i/T)),

with ``s`` the student's logits on its view (the strong one when ``strong`` is set, the weak one with
``strong: {}``) and ``t`` the labeller's on the weak view (the student's very view when there is no
strong one and the teacher labels) — which is how Chen et al. 2020 (SimCLRv2, "Big Self-Supervised
Models are Strong Semi-Supervised Learners") turn a teacher fine-tuned on the few labels into a
small student on the unlabeled images.
Who labels is ``labeller``:

- ``self`` — the student's current weights, as in FixMatch (an :class:`~distil.engine.ema.EmaModel`
  with momentum 0: a copy refreshed before every step, in eval mode);
- ``ema`` — the exponential moving average of the student (Mean Teacher, Tarvainen & Valpola 2017),
  ``momentum`` per step;
- ``teacher`` — the config's teacher, frozen: trained by the run on the labelled part, or a *given*
  teacher loaded from ``teacher.weights`` (which may have seen more labels than the student has —
  say so when reporting).

The data: ``data.labels_per_class`` / ``data.labelled_fraction`` keep the labels of a few training
samples (:mod:`distil.data.labels`); the other training inputs are ``data.unlabeled``, and
``transfer`` adds more inputs without labels. The run's teacher (when trained) and scratch student
train on the labelled samples alone (``student_scratch`` with the student's settings, which on a few
labelled samples means few steps); ``labels_baseline`` adds ``student_labels``, the labels-only
baseline of this loop: the same repeated labelled rows, strong views and epochs as the FixMatch
student, without the unlabeled rows, so it sees every label as often.

One loop, one training split: the labelled samples repeated ``r`` times followed by the unlabeled
pool, ``r = max(1, round(|U| / (μ·|L|)))`` so that a random batch holds labelled and unlabeled rows
about 1 : μ (fewer unlabeled when the pool is smaller than μ·|L|). Unlabeled rows carry the label
``-100``, which CE leaves out (a batch without a labelled row gives CE = 0). ``student.batch_size`` is
the whole batch: FixMatch's B = 64, μ = 7 is ``batch_size: 512``. An epoch visits every unlabeled
input once. The objective is built by the one builder: CE (weight 1) + ``weight`` × FixMatch (+
``comatch`` × CoMatch's graph term on the student's embedding, Li et al. 2021).

Views. The weak view is ``data.augment`` (crop, flip) and is drawn by the labeller's own
:class:`~distil.engine.view_teacher.ViewTeacher`; the student's strong view is ``data.augment``
followed by ``strong``. The default ``strong`` (random resized crop to ≥ 35 % of the area, brightness
and contrast jitter 0.4, random erasing with probability 0.5) stands in for RandAugment + Cutout on
grayscale images: a geometric change (RandAugment's translate/shear/rotate), an intensity change
(its brightness/contrast/solarize) and Cutout; no flip of its own, since the weak view's
``data.augment`` flips when asked. Text: token ids cannot be cropped or jittered, so the weak view is
the sentence itself and the strong view is ``data.augment``'s masking and replacement (UDA's
convention, Xie et al. 2020); ``strong`` must then be left unset. When the student's view *is* the
weak view (images and signals with ``strong: {}``) and the teacher labels, the teacher labels that very view, as in ordinary
distillation: consistent views (Beyer et al. 2022), cached when they fit (the session's teacher outputs).

Honesty. Like every fit, the student's best epoch is chosen on the run's *labelled* validation split
(``data.val_size`` samples). With 4 labels per class a validation split of 5,000 labelled samples
would be most of the labels the run uses: keep ``val_size`` small in semi-supervised configs (and
count it when saying how many labels a result needed). The labels of the unlabeled pool are dropped at
load time, so nothing here can read them; the row's ``mask_rate`` is the share of the pool that the
final labeller labels at confidence ≥ τ (on the inputs without augmentation) — to score those
pseudo-labels, get the withheld labels back with :func:`distil.data.labels.labelled_mask` outside the run.
"""

from __future__ import annotations

import torch
from torch import nn

from distil.data import Split
from distil.data.labels import labelled_then_unlabeled
from distil.data.tokens import is_tokens
from distil.data.views import Chain
from distil.engine.ema import EmaModel
from distil.engine.evaluate import accuracy, predict_logits
from distil.engine.objective import TermSpec
from distil.engine.view_teacher import ViewTeacher
from distil.errors import ConfigError
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy
from distil.strategies.self_supervised import augment_settings
from distil.strategies.transfer import inputs_without_labels

NAME = "student_fixmatch"
SOFT_NAME = "student_soft"  # targets: soft
BASELINE = "student_labels"


def mixed_split(labelled: Split, pool: Split, ratio: int) -> tuple[Split, int]:
    """One training split: ``labelled`` repeated ``r`` times, then ``pool`` labelled ``IGNORE``; and ``r``
    (``max(1, round(|pool| / (ratio·|labelled|)))``: about ``ratio`` unlabeled rows per labelled row)."""
    repeats = max(1, round(len(pool) / (ratio * len(labelled))))
    return labelled_then_unlabeled(labelled, pool, repeats), repeats


def confident_share(model: nn.Module, x: torch.Tensor, threshold: float, T: float, num_classes: int) -> tuple[float, list[int]]:
    """The share of ``x`` that ``model`` labels with max softmax(z/T) ≥ ``threshold``, and those pseudo-labels per class."""
    probs = torch.softmax(predict_logits(model, x).float() / T, dim=1)
    confidence, label = probs.max(dim=1)
    above = confidence >= threshold
    return float(above.float().mean()), torch.bincount(label[above], minlength=num_classes).tolist()


@register_strategy(
    "semi_supervised",
    "Sohn 2020 FixMatch: few labels (data.labels_per_class), pseudo-labels of weak views by the teacher, the student's EMA or itself, learnt from strong views",
    benchmark="benchmarks/semi_supervised/README.md",
)
def prepare(ctx: Context) -> Runner:
    opts, cfg, data = ctx.options, ctx.config, ctx.data
    if opts.labeller == "teacher" and ctx.teacher is None:
        raise ConfigError("strategy.labeller: 'teacher' pseudo-labels with the config's teacher, but the config has no teacher section; add one or set strategy.labeller: ema (or self)")
    text = is_tokens(data.train.x)
    strong_views = opts.strong.build()
    if text:
        if "strong" in opts.model_fields_set and strong_views.enabled:
            raise ConfigError("strategy.strong crops, jitters and erases images and signals; text inputs are token ids: remove strategy.strong (the strong view of text is data.augment: mask, replace)")
        if not ctx.augment.enabled:
            raise ConfigError("strategy semi_supervised: on text the weak view is the sentence itself and the strong view is data.augment, which is off; set data.augment.mask / replace (e.g. mask: 0.15)")
        weak, strong = None, ctx.augment
    else:
        weak = ctx.augment if ctx.augment.enabled else None
        strong = Chain((ctx.augment, strong_views))
    if cfg.distill.method != "kd" or cfg.distill.terms:
        ctx.say("note: semi_supervised trains with its own objective (CE + FixMatch); distill.method and distill.terms are not used")
    pool, sources = inputs_without_labels(ctx, training_inputs=False)
    train, repeats = mixed_split(data.train, pool, opts.unlabeled_ratio)
    ctx.say(
        f"semi-supervised: {len(data.train):,} labelled samples × {repeats} + {len(pool):,} unlabeled inputs "
        f"({', '.join(f'{n:,} from {k}' for k, n in sources.items())}) = {len(train):,} rows per epoch"
    )
    student = ctx.build(cfg.student)
    unlabeled_term = (
        TermSpec("FixMatch", opts.weight, params={"threshold": opts.threshold, "T": opts.T}) if opts.targets == "hard" else TermSpec("KD", opts.weight, params={"T": opts.T})
    )
    terms = [TermSpec("CE", 1.0, params={"label_smoothing": cfg.student.label_smoothing}), unlabeled_term]
    if opts.comatch > 0:
        terms.append(TermSpec("CoMatchGraph", opts.comatch, student="embedding", teacher="logits"))
    # The EMA (or the student itself) labels for the ema and self labellers: probe shapes on a copy of the student.
    objective = ctx.objective(student, ctx.teacher if opts.labeller == "teacher" else ctx.build(cfg.student), terms=terms, train=train)
    method = f"semi_supervised[{opts.labeller}]→" + ("fixmatch" if opts.targets == "hard" else "kd") + ("+comatch" if opts.comatch > 0 else "")
    # The student sees the weak view itself: a teacher labels that very view (consistent, cacheable).
    same_view = opts.labeller == "teacher" and not text and not strong_views.enabled
    # The labels-only baseline of the same loop: the repeated labelled rows alone, the same strong views,
    # so it sees each label as often as the FixMatch student does (the run's student_scratch, trained
    # with the student's batch size on the few labelled samples, takes far fewer steps).
    labelled_rows = Split(train.x[: repeats * len(data.train)], train.y[: repeats * len(data.train)])
    baseline = ctx.build(cfg.student) if opts.labels_baseline else None

    name = NAME if opts.targets == "hard" else SOFT_NAME

    def run(ctx: Context) -> None:
        device = ctx.device
        rows = train.to(device)
        student.to(device)
        if same_view:
            outputs = ctx.teacher_outputs(ctx.teacher, objective, rows)
        elif opts.labeller == "teacher":
            outputs = ViewTeacher(ctx.teacher, rows.x, weak, objective.teacher_taps, seed=ctx.seed + 1)
        else:
            momentum = opts.momentum if opts.labeller == "ema" else 0.0
            outputs = ViewTeacher(EmaModel(student, momentum), rows.x, weak, objective.teacher_taps, seed=ctx.seed + 1, follow=student)
        result = ctx.fit(name, student, objective, cfg.student, outputs=outputs, train=rows, augment=strong)
        # The labeller as training left it: the teacher, the final EMA, or (self) the student as recorded.
        labeller = student if opts.labeller == "self" else ctx.teacher if opts.labeller == "teacher" else outputs.model
        extra: dict = {}
        if opts.targets == "hard":
            mask_rate, per_class = confident_share(labeller, pool.x.to(device), opts.threshold, opts.T, ctx.data.num_classes)
            extra.update(threshold=opts.threshold, mask_rate=round(mask_rate, 6), confident_per_class=per_class)
        if opts.labeller == "ema":  # the EMA as a classifier (the row is the student's best epoch)
            extra["labeller_val_accuracy"] = accuracy(labeller, ctx.data.val.x, ctx.data.val.y)
        ctx.record(
            name, "student", method, student, cfg.student, result,
            teacher_outputs=outputs.info, labeller=opts.labeller, targets=opts.targets, T=opts.T, labelled=len(data.train), labelled_repeats=repeats,
            unlabeled=len(pool), unlabeled_sources=sources,
            views={"weak": augment_settings(weak) if weak is not None else [], "strong": augment_settings(strong)}, **extra,
        )  # fmt: skip
        ctx.save_objective(name, objective)
        if baseline is not None:
            fitted = ctx.train_on_labels(BASELINE, baseline, cfg.student, train=labelled_rows.to(device), augment=strong)
            ctx.record(BASELINE, "student", "semi_supervised→labels only", baseline, cfg.student, fitted, labelled=len(data.train), labelled_repeats=repeats)

    return run
