"""Teacher-assistant KD (Mirzadeh et al. 2020, "Improved Knowledge Distillation via Teacher
Assistant"): when the teacher is much larger than the student, distil it first into assistants of
intermediate size, each teaching the next — teacher → A₁ → … → A_n → student — every step with
``distill.method``. The chain is declared in one config: ``strategy.assistants`` from the largest to
the smallest; each assistant has its own architecture and training settings.

Paired data: the assistants are students, built for and trained on the students' inputs; the teacher
sees its own inputs in the first step only, every later step is between two students
(``data.for_student()``).
"""

from __future__ import annotations

from itertools import pairwise

from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


@register_strategy("takd", "Mirzadeh 2020 teacher-assistant chain: teacher → assistants (largest first) → student, each step distilled", benchmark="MNIST-1D", distributed=True, per_token=True,
                   paired=True)  # fmt: skip
def prepare(ctx: Context) -> Runner:
    cfg, configs = ctx.config, ctx.options.assistants
    assistants = [ctx.build(a) for a in configs]
    student = ctx.build(cfg.student)
    chain = [ctx.teacher, *assistants, student]
    # step 0 is the run's teacher (its own inputs when paired); every later teacher is an assistant, a student
    objectives = [ctx.objective(s, t, data=ctx.data if i == 0 else ctx.data.for_student()) for i, (t, s) in enumerate(pairwise(chain))]
    method = cfg.distill.method

    def run(ctx: Context) -> None:
        for i, (assistant, acfg) in enumerate(zip(assistants, configs), start=1):
            ctx.distil(f"assistant_{i}", f"takd[{i}]→{method}", assistant, acfg, chain[i - 1], objectives[i - 1], role="assistant", data=ctx.data if i == 1 else ctx.data.for_student())
        ctx.distil(f"student_takd_{method}", f"takd→{method}", student, cfg.student, chain[-2], objectives[-1], data=ctx.data if not assistants else ctx.data.for_student())

    return run
