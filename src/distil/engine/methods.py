"""Method presets: named recipes of terms with the papers' defaults.

A method is data — a list of :class:`~distil.engine.objective.TermSpec` — not code: ``at`` is
"CE + 1000 × AT on every stage". Where one method's story lives:

- its terms and weights: :data:`METHODS` below (``distil methods`` prints them);
- the maths of each loss, with the paper and the formula: :mod:`distil.losses` (``response``,
  ``feature``, ``relation``, ``contrastive``, ``adversarial``); schedules such as DKD's warm-up: :mod:`distil.losses.schedules`;
- how a term reads layers: tap groups (``stages``, ``middle_stage``, ``last_stage``, ``embedding``)
  resolved per model from one probe batch (:mod:`distil.engine.taps`), so a preset works on any
  architecture; arguments that depend on the models or data (``s_dim``, ``t_dim``, ``channels``,
  ``n_data``) are filled in from the probed shapes (:func:`distil.engine.objective.build_objective`);
- what each preset computes on fixed inputs: ``tests/golden/presets.json``, checked by ``tests/test_presets.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from distil.engine.objective import TermSpec
from distil.engine.taps import LOGITS


@dataclass(frozen=True)
class Method:
    description: str
    terms: tuple[TermSpec, ...]


def _ce(weight: float = 1.0) -> TermSpec:
    return TermSpec("CE", weight)


# Weights are the papers' (or RepDistiller's / mdistiller's reproductions of them) for CIFAR-style
# training; `distil methods` lists them and every one can be overridden per term in YAML.
METHODS: dict[str, Method] = {
    "scratch": Method("no teacher: cross-entropy on the labels", (_ce(),)),
    "kd": Method("Hinton 2015: 0.9 × T²·KL(T=4) + 0.1 × CE", (TermSpec("KD", 0.9, params={"T": 4.0}), _ce(0.1))),
    # Function matching is the objective; its other two halves are data and schedule: the same mixed view
    # for teacher and student (data.augment.mixup / cutmix, replayed from the view cache: consistent) and a
    # long cosine schedule (patient). configs/fashion_mnist/function_matching.yaml is the whole recipe.
    "fm": Method(
        "Beyer 2022 function matching: KL(teacher ‖ student) at T=1 on the same mixed view (train with data.augment.mixup / cutmix), no label term",
        (TermSpec("KD", 1.0, params={"T": 1.0}),),
    ),
    "dkd": Method("Zhao 2022 decoupled KD (α=1, β=8, T=4), warmed up over the first 10 % of training", (_ce(), TermSpec("DKD", 1.0, schedule={"warmup": 0.1}))),
    "dist": Method("Huang 2022 DIST (β=γ=1, τ=1) + CE", (_ce(), TermSpec("DIST", 1.0))),
    "lskd": Method("Sun 2024 KD on standardised logits (T=2), weight 9, + 0.1 × CE (mdistiller)", (_ce(0.1), TermSpec("LSKD", 9.0))),
    "logit_mse": Method("Ba & Caruana 2014 logit regression + CE", (_ce(), TermSpec("LogitMSE", 1.0))),
    "fitnet": Method("Romero 2015 hint on the middle stage (weight 100, connector) + CE", (_ce(), TermSpec("FitNet", 100.0, student="middle_stage"))),
    "at": Method("Zagoruyko 2017 attention transfer on every stage (β=1000) + CE", (_ce(), TermSpec("AT", 1000.0, student="stages"))),
    "nst": Method("Huang 2017 neuron selectivity transfer on the last stage (weight 50) + CE", (_ce(), TermSpec("NST", 50.0, student="last_stage"))),
    "vid": Method("Ahn 2019 variational information distillation on every stage + CE", (_ce(), TermSpec("VID", 1.0, student="stages"))),
    "sp": Method("Tung 2019 similarity-preserving on the last stage (γ=3000) + CE", (_ce(), TermSpec("SP", 3000.0, student="last_stage"))),
    "rkd": Method("Park 2019 relational KD (distance 25 + angle 50) on the embedding + CE", (_ce(), TermSpec("RKD", 1.0, student="embedding"))),
    # RepDistiller weighs PKT 30000 with a loss averaged over all b² pairs at batch 64; ours averages
    # the per-sample KL over b (the paper), so the same strength is 30000 / 64 ≈ 470.
    "pkt": Method("Passalis 2018 probabilistic knowledge transfer on the embedding (weight 470) + CE", (_ce(), TermSpec("PKT", 470.0, student="embedding"))),
    "cc": Method("Peng 2019 correlation congruence on the embedding (weight 0.02) + CE", (_ce(), TermSpec("CC", 0.02, student="embedding"))),
    "crd": Method("Tian 2020 contrastive representation distillation on the embedding (weight 0.8) + CE", (_ce(), TermSpec("CRD", 0.8, student="embedding"))),
    "crd+kd": Method("CRD (0.8) + KD (T=4, weight 1) + CE", (_ce(), TermSpec("KD", 1.0, params={"T": 4.0}), TermSpec("CRD", 0.8, student="embedding"))),
    # Self-supervised terms (no label term): for strategy self_supervised, which shows the teacher (frozen or
    # the student's EMA) another augmented view; each reads the embedding (the input of the last linear layer).
    "simclr": Method("Chen 2020 SimCLR / InfoNCE: the student's projected embedding picks the teacher's of the same input among the batch (T=0.1); no label term", (TermSpec("InfoNCE", 1.0, student="embedding"),)),
    "byol": Method("Grill 2020 BYOL: a predictor maps the student's embedding onto the teacher's, 2 − 2·cos; no label term", (TermSpec("BYOL", 1.0, student="embedding"),)),
    "barlow_twins": Method("Zbontar 2021 Barlow Twins: cross-correlation of student projection and teacher embedding → identity (λ=5e-3), weight 0.01; no label term", (TermSpec("BarlowTwins", 0.01, student="embedding"),)),
    "seed": Method("Fang 2021 SEED: the student's similarity distribution over a queue of 4096 teacher embeddings (T_s=0.2, T_t=0.01); no label term", (TermSpec("SEED", 1.0, student="embedding"),)),
    "dino": Method("Caron 2021 DINO: centred, sharpened teacher softmax over 256 prototypes (T_s=0.1, T_t=0.04); no label term", (TermSpec("DINO", 1.0, student="embedding"),)),
    "adversarial": Method(
        "Xu 2017 / MEAL 2019: KD (T=4, 0.9) + 0.1 × CE + a discriminator on the logits (weight 0.1) the student learns to fool",
        (TermSpec("KD", 0.9, params={"T": 4.0}), _ce(0.1), TermSpec("Adversarial", 0.1)),
    ),
}


def list_methods() -> dict[str, str]:
    """Name → description with its terms, for ``distil methods``."""
    out = {}
    for name, method in METHODS.items():
        terms = " + ".join(f"{t.weight:g}×{t.loss}" + (f"@{t.student}" if t.student != LOGITS else "") for t in method.terms)
        out[name] = f"{method.description}  [{terms}]"
    return out
