"""A generalist and specialists (Hinton, Vinyals & Dean 2015, §5), combined into soft targets.

1. The generalist is the config's ``teacher``.
2. Class subsets S_m are given (``subsets``: indices or class names) or found from the generalist's
   confusion matrix on the training split: repeatedly the most confused pair of unused classes
   (confusion counted both ways), grown to ``size`` by the class most confused with the subset.
3. Specialist m classifies ``|S_m| + 1`` classes: its subset and a *dustbin* for every other class.
   Its training set is biased to its subset as in the paper: every sample of S_m and as many samples
   drawn at random (seeded) from the rest. With the generalist's architecture (no ``specialist``
   section) it starts from the generalist's weights, all but the head, as in the paper.
4. For an input x, the specialists whose subset holds the generalist's top class are *active*
   (A(x)); the combined distribution q is the paper's

       q = argmin_q  KL(p^g ‖ q) + Σ_{m∈A(x)} KL(p^m ‖ q^m),

   where q^m is q seen by specialist m: q on S_m and the rest of its mass on the dustbin. It is
   found per sample by gradient descent on q's logits, starting from the generalist's (Adam, 100
   steps; the problem is convex in q). :class:`SpecialistEnsemble` returns ``log q`` as logits, so
   the student's ``KD(T)`` term reads ``softmax(log q / T)`` like any teacher's.

Paired data: the generalist and the specialists are teachers and see the teacher's inputs
(``data.for_teacher()``: confusion, training, their rows); the student learns from the combined
distribution on its own inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from distil.config import ModelConfig
from distil.data import Dataset
from distil.engine.evaluate import predict_logits
from distil.engine.taps import LOGITS
from distil.errors import ConfigError
from distil.losses import LOSSES
from distil.strategies.context import Context
from distil.strategies.frozen_backbone import relabelled
from distil.strategies.registry import Runner, register_strategy


class SpecialistEnsemble(nn.Module):
    """Generalist + specialists → the logits ``log q`` of Hinton's combined distribution (see the module doc)."""

    def __init__(self, generalist: nn.Module, specialists: Sequence[nn.Module], subsets: Sequence[Sequence[int]], steps: int = 100, lr: float = 0.1) -> None:
        super().__init__()
        self.generalist = generalist
        self.specialists = nn.ModuleList(specialists)
        self.subsets = [list(s) for s in subsets]
        self.steps, self.lr = steps, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            log_pg = F.log_softmax(self.generalist(x), dim=1)
            top = log_pg.argmax(1)
            experts = []
            for model, subset in zip(self.specialists, self.subsets):
                index = torch.tensor(subset, device=x.device)
                active = torch.isin(top, index).float()
                experts.append((index, F.softmax(model(x), dim=1), active))
        if not experts:
            return log_pg
        # The teacher cache runs under no_grad and the latency measurement under inference_mode; the
        # fit of q needs gradients, on ordinary (cloned) tensors.
        with torch.inference_mode(False), torch.enable_grad():
            log_pg = log_pg.clone()
            experts = [(index.clone(), p_m.clone(), active.clone()) for index, p_m, active in experts]
            u = log_pg.clone().requires_grad_(True)
            opt = torch.optim.Adam([u], lr=self.lr)
            for _ in range(self.steps):
                log_q = F.log_softmax(u, dim=1)
                loss = -(log_pg.exp() * log_q).sum(1)  # KL(p^g ‖ q) up to a constant
                for index, p_m, active in experts:
                    q_in = log_q[:, index]
                    q_out = torch.log1p(-q_in.exp().sum(1).clamp(max=1 - 1e-6))  # the dustbin's share
                    log_qm = torch.cat([q_in, q_out[:, None]], dim=1)
                    loss = loss - active * (p_m * log_qm).sum(1)
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
        return F.log_softmax(u.detach(), dim=1)


def class_index(data: Dataset, c: int | str, where: str) -> int:
    if isinstance(c, str) and c in data.class_names:
        return data.class_names.index(c)
    if isinstance(c, int) and 0 <= c < data.num_classes:
        return c
    raise ConfigError(f"strategy specialists: {where} names class {c!r}, which does not exist; the data have classes 0..{data.num_classes - 1} named {', '.join(data.class_names)}")


def given_subsets(data: Dataset, subsets: Sequence[Sequence[int | str]]) -> list[list[int]]:
    out: list[list[int]] = []
    for k, subset in enumerate(subsets):
        classes = [class_index(data, c, f"subset {k}") for c in subset]
        if len(set(classes)) < 2 or len(set(classes)) != len(classes) or len(classes) >= data.num_classes:
            raise ConfigError(f"strategy specialists: subset {k} {list(subset)} must hold 2 .. {data.num_classes - 1} distinct classes")
        used = sorted(set(classes) & {c for s in out for c in s})
        if used:
            raise ConfigError(f"strategy specialists: subset {k} repeats classes {used} of an earlier subset; subsets must be disjoint")
        out.append(classes)
    return out


def confusable_subsets(confusion: torch.Tensor, count: int, size: int) -> list[list[int]]:
    """``count`` disjoint subsets of ``size`` classes, greedily the most confused (both directions)."""
    s = (confusion + confusion.T).float()
    s.fill_diagonal_(-1)
    free = set(range(len(s)))
    subsets = []
    for _ in range(count):
        if len(free) < size:
            break
        pairs = [(s[i, j].item(), i, j) for i in free for j in free if i < j]
        _, i, j = max(pairs)
        subset = [i, j]
        free -= {i, j}
        while len(subset) < size:
            nxt = max(free, key=lambda c: s[subset, c].sum().item())
            subset.append(nxt)
            free.remove(nxt)
        subsets.append(sorted(subset))
    return subsets


def specialist_data(data: Dataset, subset: Sequence[int], seed: int) -> tuple[Dataset, torch.Tensor]:
    """The data relabelled for one specialist (dustbin = ``len(subset)``) and its biased training indices."""
    label_map = [subset.index(c) if c in subset else len(subset) for c in range(data.num_classes)]
    task = relabelled(data, label_map)
    inside = (task.train.y != len(subset)).nonzero().flatten()
    outside = (task.train.y == len(subset)).nonzero().flatten()
    pick = torch.randperm(len(outside), generator=torch.Generator().manual_seed(seed))[: len(inside)].to(outside.device)
    return task, torch.cat([inside, outside[pick]]).sort().values


@register_strategy("specialists", "Hinton 2015 §5: specialists on confusable class subsets (+ dustbin), combined with the generalist (KL fit) into soft targets", benchmark="MNIST-1D", paired=True)
def prepare(ctx: Context) -> Runner:
    opts, cfg = ctx.options, ctx.config
    data = ctx.data.for_teacher()  # paired data: the specialists are teachers and see the teacher's inputs
    for spec in cfg.distill.term_specs():
        if LOSSES[spec.loss].uses_teacher and (spec.student != LOGITS or (spec.teacher or LOGITS) != LOGITS):
            raise ConfigError(f"strategy specialists: the combined teacher has only logits, but term {spec.loss} reads {spec.teacher or spec.student}; use a logit method (kd, dkd, dist, ...)")
    subsets = given_subsets(data, opts.subsets) if opts.subsets else None
    if subsets is None and opts.count * opts.size > data.num_classes:
        raise ConfigError(f"strategy specialists: {opts.count} subsets of {opts.size} classes need {opts.count * opts.size} classes, the data have {data.num_classes}")
    sizes = [len(s) for s in subsets] if subsets else [opts.size] * opts.count
    spec_cfg = opts.specialist or cfg.teacher
    specialists = [ctx.build(spec_cfg, ctx.seed + 100 + k, data=replace(data, num_classes=n + 1)) for k, n in enumerate(sizes)]
    student = ctx.build(cfg.student)
    objective = ctx.objective(student, ctx.teacher)
    method = cfg.distill.method

    def run(ctx: Context) -> None:
        found = subsets
        seen = ctx.data.for_teacher()  # the teacher's side of paired data (the data themselves otherwise)
        if found is None:
            predicted = predict_logits(ctx.teacher, seen.train.x).argmax(1).cpu()
            k = seen.num_classes
            confusion = torch.bincount(seen.train.y.cpu() * k + predicted, minlength=k * k).view(k, k)
            found = confusable_subsets(confusion, opts.count, opts.size)
        names = [[seen.class_names[c] for c in s] for s in found]
        ctx.say(f"specialist subsets: {names}")
        for k, (model, subset) in enumerate(zip(specialists, found), start=1):
            task, index = specialist_data(seen, subset, ctx.seed + k)
            model.to(ctx.device)
            if opts.specialist is None:  # same architecture: start from the generalist (all but the head)
                own = model.state_dict()
                model.load_state_dict({k: v for k, v in ctx.teacher.state_dict().items() if k in own and own[k].shape == v.shape}, strict=False)
            result = ctx.train_on_labels(f"specialist_{k}", model, spec_cfg, data=task, train=task.train.subset(index), seed=ctx.seed + k)
            ctx.record(f"specialist_{k}", "specialist", f"classes {'/'.join(names[k - 1])} + dustbin", model, spec_cfg, result, data=task)
        combined = SpecialistEnsemble(ctx.teacher, specialists, found).to(ctx.device)
        ctx.record("teacher_specialists", "ensemble", f"generalist + {len(found)} specialists", combined, ModelConfig(arch=f"{cfg.teacher.arch} + {len(found)} × {spec_cfg.arch}"), None, data=seen)
        ctx.distil(f"student_specialists_{method}", f"specialists→{method}", student, cfg.student, combined, objective)

    return run
