"""Teacher-assistant KD (Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher
Assistant"): when the teacher is much larger than the student, distil it first into assistants of
intermediate size, each teaching the next — teacher → A₁ → … → A_n → student — every step with
``distill.method``. The chain is declared in one config: ``strategy.assistants`` from the largest to
the smallest; each assistant has its own architecture and training settings.
"""

from __future__ import annotations

from itertools import pairwise

from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


@register_strategy("takd", "Mirzadeh 2020 teacher-assistant chain: teacher → assistants (largest first) → student, each step distilled", benchmark="MNIST-1D", distributed=True, per_token=True)
def prepare(ctx: Context) -> Runner:
    cfg, configs = ctx.config, ctx.options.assistants
    assistants = [ctx.build(a) for a in configs]
    student = ctx.build(cfg.student)
    chain = [ctx.teacher, *assistants, student]
    objectives = [ctx.objective(s, t) for t, s in pairwise(chain)]
    method = cfg.distill.method

    def run(ctx: Context) -> None:
        for i, (assistant, acfg) in enumerate(zip(assistants, configs), start=1):
            ctx.distil(f"assistant_{i}", f"takd[{i}]→{method}", assistant, acfg, chain[i - 1], objectives[i - 1], role="assistant")
        ctx.distil(f"student_takd_{method}", f"takd→{method}", student, cfg.student, chain[-2], objectives[-1])

    return run
