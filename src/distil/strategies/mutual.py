"""Online distillation: deep mutual learning, and a teacher that keeps training while it teaches.

Zhang, Xiang, Hospedales & Lu 2018, "Deep Mutual Learning": a cohort of K models is trained
together; model i minimises

    L_i = CE(z_i, y) + 1/(K − 1) · Σ_{j≠i} T² · KL(softmax(z_j/T) ‖ softmax(z_i/T))

with the peers' current outputs z_j as fixed targets (T = 1 in the paper). The cohort is one
``nn.Module`` (:class:`Cohort`) trained by the ordinary ``fit``: its objective is Σ_i L_i over taps
``members.i``, and the peers' outputs of the same batch are the "teacher outputs"
(:class:`PeerOutputs`, detached). Because each L_i depends only on model i's parameters (the peers are
detached), one optimizer step on Σ_i L_i is exactly a simultaneous step of every model on its own
loss (the paper alternates the updates within a step). With ``teacher_trains`` the config's teacher
— trained or loaded first as usual — joins the cohort and keeps training while it teaches. The cohort
trains with the student's settings; its validation accuracy (which picks the best epoch) is that of
the members' averaged probabilities.

Paired data: the cohort of students learns on the students' inputs (``data.for_student()``).
``teacher_trains`` is refused there: the cohort's one forward would have to give the teacher its own
inputs and the students theirs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distil.engine.objective import Objective
from distil.errors import ConfigError
from distil.losses import CE, KD
from distil.strategies.context import Context
from distil.strategies.registry import Runner, register_strategy


class Cohort(nn.Module):
    """Models trained together; the output is the log of their mean probabilities (the cohort's prediction)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.last: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = [m(x) for m in self.members]
        return torch.log(torch.stack([F.softmax(z, dim=1) for z in self.last]).mean(0).clamp_min(1e-12))


class PeerOutputs:
    """"Teacher outputs" of mutual learning: every member's logits from the cohort's forward of this batch."""

    def __init__(self, cohort: Cohort) -> None:
        self.cohort = cohort

    def __call__(self, index: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"members.{j}": z.detach() for j, z in enumerate(self.cohort.last)}


def mutual_objective(k: int, T: float = 1.0, label_smoothing: float = 0.0) -> Objective:
    """Σ_i [CE on member i + 1/(k−1) Σ_{j≠i} KD(T) from member j to member i]."""
    terms = []
    for i in range(k):
        terms.append(CE(label_smoothing).between(f"members.{i}") * 1.0)
        terms += [KD(T).between(f"members.{i}", f"members.{j}") * (1.0 / (k - 1)) for j in range(k) if j != i]
    return Objective(terms)


@register_strategy("mutual", "Zhang 2018 deep mutual learning: a cohort of students (and optionally the teacher, still training) each distilling from the others' current outputs", benchmark="MNIST-1D", distributed=True,
                   paired=True)  # fmt: skip
def prepare(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    if opts.teacher_trains and ctx.teacher is None:
        raise ConfigError("strategy mutual: teacher_trains is true but the config has no teacher section")
    if opts.teacher_trains and ctx.data.paired:
        raise ConfigError(
            f"strategy mutual: teacher_trains does not work on paired data ({ctx.data.name!r}): the teacher sees x_teacher, the students x, "
            "and the cohort trains on one input per batch; set strategy.teacher_trains: false (the students learn from each other on their inputs)"
        )
    if cfg.distill.method != "kd" or cfg.distill.terms:
        ctx.say("note: mutual learning trains with its own objective (CE + KL to the peers); distill.method and distill.terms are not used")
    students = [ctx.build(cfg.student, ctx.seed + i) for i in range(opts.students)]
    objective = mutual_objective(opts.students + int(opts.teacher_trains), opts.T, cfg.student.label_smoothing)

    def run(ctx: Context) -> None:
        members = ([ctx.teacher] if opts.teacher_trains else []) + students
        for m in members:
            m.requires_grad_(True)
        cohort = Cohort(members)
        students_side = ctx.data.for_student()  # paired data: the students' inputs alone
        result = ctx.fit("cohort", cohort, objective, cfg.student, outputs=PeerOutputs(cohort), data=students_side)
        if opts.teacher_trains:
            ctx.record("teacher_online", "teacher", "mutual (kept training)", ctx.teacher, cfg.teacher, result)
        for i, student in enumerate(students, start=1):
            ctx.record(f"student_dml{i}", "student", "mutual", student, cfg.student, result, data=students_side)

    return run
