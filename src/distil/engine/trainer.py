"""The one training loop. Every method differs only in its objective and its teacher outputs.

The path of one batch: ``index → x (augmented on the whole batch) → student(x) → teacher outputs
(cache or no-grad forward) → objective terms → weighted sum → backward → step``. Data stay on the
device as tensors: no DataLoader, no worker processes, no per-sample Python.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from distil.data import Augment, Split
from distil.data.mix import MixedBatches
from distil.data.tokens import bucketed_batches, is_tokens, lengths, token_positions, trim
from distil.engine.distributed import SINGLE_PROCESS, Sync
from distil.engine.evaluate import use_channels_last
from distil.engine.objective import Objective
from distil.engine.precision import autocast
from distil.engine.taps import LOGITS, Taps
from distil.engine.teacher_sources import TeacherOutputs


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    precision: str = "fp32"  # fp32, bf16 or auto: the forwards under autocast (engine/precision.py)
    warmup: float = 0.0  # fraction of the steps with lr rising linearly from 0 (then the schedule)
    clip_norm: float | None = None  # clip the global gradient norm before each step


OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], TrainSettings], torch.optim.Optimizer]] = {
    "sgd": lambda p, s: torch.optim.SGD(p, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0),
    "adamw": lambda p, s: torch.optim.AdamW(p, lr=s.lr, weight_decay=s.weight_decay),
}

# Learning-rate factor as a function of training progress in [0, 1), applied every step.
SCHEDULES: dict[str, Callable[[float, TrainSettings], float]] = {
    "cosine": lambda t, s: 0.5 * (1.0 + math.cos(math.pi * t)),
    "constant": lambda t, s: 1.0,
    "step": lambda t, s: s.gamma ** sum(t >= m for m in s.milestones),
    "linear": lambda t, s: max(0.0, 1.0 - t),
}


def lr_factor(t: float, settings: TrainSettings) -> float:
    """The learning-rate factor at progress ``t`` in [0, 1): linear warm-up, then the schedule.

    With ``warmup = w`` the factor rises as ``t / w`` for ``t < w``; after it, the schedule runs over
    the remaining steps (``(t − w) / (1 − w)``), as BERT fine-tuning does (warm-up + linear decay).
    """
    w = settings.warmup
    if t < w:
        return t / w
    return SCHEDULES[settings.schedule]((t - w) / (1.0 - w) if w else t, settings)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    terms: dict[str, float]
    val_accuracy: float
    lr: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "loss": self.loss,
            "terms": self.terms,
            "val_accuracy": self.val_accuracy,
            "lr": self.lr,
            "seconds": self.seconds,
        }


@dataclass
class FitResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return sum(r.seconds for r in self.history)


@dataclass
class LoopState:
    """Everything the rest of a fit depends on besides its inputs: what a checkpoint saves and restores.

    ``epoch`` is the number of epochs done; it is also the position in a view cache (views are indexed
    by epoch), so restoring it resumes the teacher's pre-drawn views where they were.
    """

    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    order: torch.Generator  # batch order and augmentation draws
    result: FitResult
    settings: TrainSettings
    seed: int
    sync: Sync = SINGLE_PROCESS  # the process group: each rank has its own batch order and RNG states
    #: the teacher outputs, when they have a state of their own (``state_dict``: an EMA teacher, a view stream)
    teacher: Any = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch: int = 0


class Checkpoint(Protocol):
    """Saves a fit after each epoch and restores it before the first (see ``distil.session.checkpoints``)."""

    def restore(self, state: LoopState) -> None: ...

    def save(self, state: LoopState) -> None: ...


def _check_mixing(objective: Objective, train: Split) -> bool:
    """Mixed inputs (mixup / cutmix) have two labels each: the label terms must read soft targets
    (``Loss.soft_targets``: CE). Returns whether a term reads labels (then the soft targets are made)."""
    if train.x.dim() not in (3, 4):
        raise ValueError(f"mixup and cutmix mix images (N, C, H, W) or signals (N, C, L); these inputs are {tuple(train.x.shape)}")
    active = [(name, t) for name, t in zip(objective.names, objective.terms) if t.weight != 0 and t.loss.uses_target]
    hard = [name for name, t in active if not t.loss.soft_targets]
    if hard:
        raise ValueError(
            f"term {hard[0]} reads one label per input, but mixed inputs (data.augment.mixup / cutmix) have two; "
            "use a method whose label term is CE (kd, fm, scratch) or turn mixing off"
        )
    return bool(active) and train.y is not None


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    objective: Objective,
    settings: TrainSettings,
    *,
    seed: int,
    teacher: TeacherOutputs | None = None,
    augment: Augment | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    dist: Sync | None = None,
    checkpoint: Checkpoint | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the weights of its best validation epoch."""
    result = FitResult(best_epoch=0, best_val_accuracy=-1.0)
    epochs = fit_epochs(
        model, train, val, objective, settings, seed=seed, teacher=teacher, augment=augment, on_batch=on_batch, result=result, dist=dist, checkpoint=checkpoint
    )
    for record in epochs:
        if on_epoch is not None:
            on_epoch(record)
    return result


def fit_epochs(
    model: nn.Module,
    train: Split,
    val: Split,
    objective: Objective,
    settings: TrainSettings,
    *,
    seed: int,
    teacher: TeacherOutputs | None = None,
    augment: Augment | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    result: FitResult | None = None,
    dist: Sync | None = None,
    checkpoint: Checkpoint | None = None,
) -> Iterator[EpochRecord]:
    """:func:`fit` one epoch at a time: yields each epoch's record (a benchmark can interleave runs).

    When the teacher outputs replay pre-drawn views (``teacher.views``), each sample shows its view of
    the epoch instead of a fresh augmentation. An augmentation that mixes pairs (mixup / cutmix,
    :class:`~distil.data.mix.Mixed`) reads each partner from the whole ``train.x`` — the pair stored with
    the view, or drawn per batch without a view cache — and the label terms read the pairs' soft labels. The best validation weights are restored when the
    generator is exhausted; ``result`` (if given) collects the history. A ``checkpoint`` restores the
    loop's state before the first epoch (the loop then starts after the restored epoch; a finished
    fit runs no epoch) and saves it after each one.

    ``dist`` (a :class:`~distil.engine.distributed.Distributed` under torchrun): ``train`` is this
    rank's shard, ``settings.batch_size`` the global batch; gradients, metrics, BatchNorm statistics
    and validation are combined across ranks, so every rank holds the same model and history.
    """
    if objective.uses_teacher and teacher is None:
        raise ValueError("the objective has teacher terms but no teacher outputs were given")
    if train.y is None and any(t.loss.uses_target for t in objective.terms):
        raise ValueError("the objective has a label term but the training data are unlabeled")
    result = result if result is not None else FitResult(best_epoch=0, best_val_accuracy=-1.0)
    device = train.x.device
    use_channels_last(model, train.x)
    objective.to(device)
    params = [p for p in [*model.parameters(), *objective.parameters()] if p.requires_grad]
    sync = dist if dist is not None else SINGLE_PROCESS
    sync.start(model, params, len(train))
    batch_size = sync.local_batch(settings.batch_size)
    optimizer = OPTIMIZERS[settings.optimizer](params, settings)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / total_steps, settings))
    order = torch.Generator().manual_seed(sync.order_seed(seed))
    augment = augment if augment is not None and augment.enabled else None
    uses_teacher = objective.uses_teacher and teacher is not None
    views = getattr(teacher, "views", None) if uses_teacher and augment is not None else None
    mix = MixedBatches.of(augment)
    mixed_labels = mix is not None and _check_mixing(objective, train)
    # Text: batches of similar length (little padding), each cut to its longest sentence after augmenting.
    token_lengths = lengths(train.x) if is_tokens(train.x) else None

    state = LoopState(model, objective, optimizer, scheduler, order, result, settings, seed, sync, teacher=teacher if hasattr(teacher, "state_dict") else None)
    if checkpoint is not None:
        checkpoint.restore(state)
    with Taps(model, objective.student_taps) as student:
        for epoch in range(state.epoch + 1, settings.epochs + 1):
            start = time.perf_counter()
            model.train()
            objective.train()
            sums = torch.zeros(len(objective.names) + 1, device=device)
            permutation = torch.randperm(len(train), generator=order).to(device)
            if token_lengths is None:
                batches = permutation.split(batch_size)
            else:
                batches = bucketed_batches(permutation, token_lengths, batch_size, order)
            for step, index in enumerate(batches):
                x = train.x[index]
                view = pairs = None
                if views is not None:
                    view = views.view_of(index, epoch - 1)
                    x, pairs = views.batch(x, index, view, source=train.x)
                elif mix is not None:
                    x, pairs = mix.draw(x, train.x, order)
                elif augment is not None:
                    x = augment(x, order)
                x = trim(x)
                target = train.y[index] if train.y is not None else None
                if target is not None and target.dim() == 2:
                    target = target[:, : x.shape[1]]  # a tag per token: cut like the ids
                positions = token_positions(x, target) if is_tokens(x) else None
                with autocast(settings.precision, device):
                    student_out = student.forward(x)
                    if mixed_labels and pairs is not None and target is not None and mix is not None:
                        target = mix.targets(target, train.y[pairs.partner.to(train.y.device)], pairs.lam, student_out[LOGITS].shape[-1])
                    teacher_out = None
                    if uses_teacher and teacher is not None:
                        teacher_out = teacher(index, x) if view is None else teacher(index, x, view)
                    progress = (epoch - 1 + step / steps_per_epoch) / settings.epochs
                    values = objective(student_out, teacher_out, target, index=index, progress=progress, positions=positions)
                loss = torch.stack(list(values.values())).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                sync.average_gradients(params)
                if settings.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, settings.clip_norm)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():
                    sums[0] += loss.detach() * len(index)
                    for k, name in enumerate(objective.names, start=1):
                        if name in values:
                            sums[k] += values[name].detach() * len(index)
                if on_batch is not None:
                    on_batch(step + 1, steps_per_epoch)
            means = sync.mean(sums, len(train)).tolist()
            sync.average_buffers(model)
            val_acc = sync.accuracy(model, val.x, val.y) if len(val) else float("nan")
            record = EpochRecord(
                epoch=epoch,
                loss=means[0],
                terms=dict(zip(objective.names, means[1:])),
                val_accuracy=val_acc,
                lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - start,
            )
            result.history.append(record)
            if not math.isfinite(record.loss):
                raise FloatingPointError(f"training diverged at epoch {epoch} (loss {record.loss}); lower the learning rate")
            if val_acc > result.best_val_accuracy or not len(val):
                result.best_epoch, result.best_val_accuracy = epoch, val_acc
                state.best_state = copy.deepcopy(model.state_dict())
            state.epoch = epoch
            if checkpoint is not None:
                checkpoint.save(state)
            yield record
    model.load_state_dict(state.best_state)
