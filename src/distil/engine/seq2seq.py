"""Training a sequence-to-sequence model under teacher forcing, with or without a teacher.

The path of one batch: ``index → src, tgt (cut to their longest row) → tgt_in = tgt[:, :-1],
tgt_out = tgt[:, 1:] → student(src, tgt_in) → logits (B, T, V)``; the real target positions
(``tgt_out != 0``) become rows ``(P, V)`` (:func:`distil.engine.objective.per_token_rows`, as a
tagger's tokens do), so the registered logit losses read a target token as they read a sample:

* the data-only baseline and sequence-level KD: ``CE`` on the rows (for sequence-level KD the targets
  are the teacher's beam outputs, Kim & Rush 2016 §3.2);
* word-level KD (Kim & Rush 2016 §3.1): ``α · KD(T) + (1 − α) · CE``, the teacher's distribution at
  each target position from a no-grad forward of the teacher on the same ``(src, tgt_in)``, padding
  never counted.

Batches are drawn by length (:func:`distil.data.tokens.bucketed_batches`); optimizer, schedule and
clipping are the trainer's (:data:`~distil.engine.trainer.OPTIMIZERS`, :func:`~distil.engine.trainer.lr_factor`).
After each epoch the validation loss (mean NLL per target token) is measured; the weights of the best
epoch are kept.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from distil.data.tokens import PAD_ID, bucketed_batches, trim
from distil.engine.objective import per_token_rows
from distil.engine.trainer import OPTIMIZERS, EpochRecord, FitResult, TrainSettings, lr_factor
from distil.losses import Term


def _pair(src: torch.Tensor, tgt: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s, t = trim(src[index]), trim(tgt[index])
    return s, t[:, :-1], t[:, 1:]


def term_values(
    terms: Sequence[Term], student_logits: torch.Tensor, teacher_logits: torch.Tensor | None, tgt_out: torch.Tensor, progress: float = 0.0
) -> dict[str, torch.Tensor]:
    """Each term's weighted value over the real target tokens (padding masked)."""
    positions = tgt_out != PAD_ID
    values = {}
    for term in terms:
        weight = term.weight_at(progress)
        if weight == 0:
            continue
        s, t, y = per_token_rows(student_logits.float(), teacher_logits.float() if term.loss.uses_teacher and teacher_logits is not None else None, tgt_out, positions, labelled=term.loss.uses_target)
        values[term.name] = weight * term.loss(s, t, target=y)
    return values


@torch.inference_mode()
def token_nll(model: nn.Module, src: torch.Tensor, tgt: torch.Tensor, batch_size: int = 256) -> float:
    """Mean negative log-likelihood per real target token under teacher forcing (perplexity = exp)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    order = torch.sort((src != PAD_ID).sum(1), stable=True).indices
    for index in order.split(batch_size):
        s, tin, tout = _pair(src, tgt, index)
        logits = model(s, tin)
        total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tout.reshape(-1), ignore_index=PAD_ID, reduction="sum"))
        count += int((tout != PAD_ID).sum())
    model.train(was)
    return total / max(count, 1)


def fit_seq2seq(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    terms: Sequence[Term],
    settings: TrainSettings,
    *,
    teacher: nn.Module | None = None,
    seed: int = 0,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train = (src, tgt)`` (targets ``[BOS] … [EOS]``) with ``terms``; see the module doc.

    ``EpochRecord.val_accuracy`` holds ``-val NLL`` (higher is better, as the other fits' accuracy).
    """
    generator = torch.Generator().manual_seed(seed)
    src, tgt = train
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[settings.optimizer](params, settings)
    steps_per_epoch = math.ceil(len(src) / settings.batch_size)
    total = max(1, settings.epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(min(step, total - 1) / total, settings))
    if teacher is not None:
        teacher.eval()
    lengths = (src != PAD_ID).sum(1)
    result = FitResult(best_epoch=0, best_val_accuracy=-math.inf)
    best_state: dict[str, torch.Tensor] = {}
    step = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        started = time.perf_counter()
        sums: dict[str, float] = {}
        loss_sum = 0.0
        batches = bucketed_batches(torch.randperm(len(src), generator=generator), lengths, settings.batch_size, generator)
        for index in batches:
            s, tin, tout = _pair(src, tgt, index)
            logits = model(s, tin)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(s, tin)
            values = term_values(terms, logits, teacher_logits, tout, step / total)
            loss = sum(values.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_norm:
                nn.utils.clip_grad_norm_(params, settings.clip_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += float(loss.detach())
            for name, v in values.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach())
        val_score = -token_nll(model, *val)
        record = EpochRecord(epoch, loss_sum / len(batches), {k: v / len(batches) for k, v in sums.items()}, val_score, optimizer.param_groups[0]["lr"], time.perf_counter() - started)
        result.history.append(record)
        if val_score > result.best_val_accuracy:
            result.best_epoch, result.best_val_accuracy = epoch, val_score
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(record)
    if best_state:
        model.load_state_dict(best_state)
    model.eval()
    return result
