"""Training and measuring causal language models: the one loop every LM method runs, and the metrics.

A method is data (:class:`LMMethod`, presets in :data:`LM_METHODS`), not a branch: which text the student
reads (the training blocks, or the teacher's samples for sequence-level KD), the weight of the data's
next-token cross-entropy, one token divergence from :mod:`distil.losses.token_distributions` with its
weight, and ``on_policy`` — the fraction λ of steps whose batch is the student's own continuation of
a training prompt, scored by the teacher (GKD, Agarwal et al. 2024; MiniLLM trains on student samples too).

The path of one step (:func:`fit_lm`)::

    index (a slice of a seeded permutation of the training blocks)
      → blocks = text[index]  (B, L+1);  with probability λ: blocks = generate(student, blocks[:, :P], sampling)
      → x, y = blocks[:, :-1], blocks[:, 1:];  mask: every position, or only generated ones (on-policy)
      → s = student(x);  t = teacher logits: the top-k cache (data batches) or a no-grad forward (samples)
      → loss = ce · TokenCE(s, y)  [data batches only]  +  kd · divergence(s, t, mask)
      → backward → clip → AdamW step → cosine LR (linear warm-up)

Metrics (:func:`perplexity`, :func:`mean_token_kl`, :func:`generation_speed`): perplexity is
``exp(mean NLL)`` over every predicted token of held-out blocks; the mean per-token
``KL(teacher ‖ student)`` is over the same tokens; speed is new tokens per second of batched
generation with the KV cache (greedy or sampling) after one warm-up call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distil.losses import build_loss
from distil.losses.token_distributions import NO_LABEL, TokenCE
from distil.models.generate import generate


@dataclass(frozen=True)
class LMMethod:
    """How one student learns: see the module docstring. ``loss`` names a registered token loss."""

    name: str
    loss: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    kd_weight: float = 1.0
    ce_weight: float = 1.0
    on_policy: float = 0.0
    sequence_level: bool = False
    description: str = ""

    @property
    def uses_teacher(self) -> bool:
        return self.loss is not None or self.sequence_level


#: The presets (a config may override any field by name). Weights follow the papers' defaults where
#: they give one: GKD mixes on-policy batches (λ = 0.5) with β = 0.5; MiniLLM's reverse KL is trained
#: with the language-modelling loss kept (its L_PT term); word-level KD keeps the data loss.
LM_METHODS: dict[str, LMMethod] = {
    m.name: m
    for m in (
        LMMethod("data", description="the data alone: next-token cross-entropy on the training books"),
        LMMethod("fkl", "FKL", description="word-level KD: forward KL(teacher ‖ student) per token + data CE (Kim & Rush 2016)"),
        LMMethod("kd", "FKL", ce_weight=0.0, description="forward KL(teacher ‖ student) per token alone on the data (Hinton et al. 2015; GKD's 'supervised KD')"),
        LMMethod("rkl", "RKL", description="reverse KL(student ‖ teacher) per token + data CE (MiniLLM, Gu et al. 2024)"),
        LMMethod("gkd", "GJSD", {"beta": 0.5}, on_policy=0.5, ce_weight=0.0, description="GKD: JSD(β=0.5), half the batches the student's own samples (Agarwal et al. 2024)"),
        LMMethod("tvd", "TVD", description="total variation per token + data CE (Wen et al. 2023)"),
        LMMethod("skl", "SKL", {"alpha": 0.1}, description="skew KL, α = 0.1 + data CE (DistiLLM, Ko et al. 2024)"),
        LMMethod("seqkd", sequence_level=True, description="sequence-level KD: the teacher's samples are the training text (Kim & Rush 2016)"),
        LMMethod("seqkd_fkl", "FKL", sequence_level=True, description="sequence- + word-level KD: the teacher's samples as text, its per-token distributions on them + CE (Kim & Rush 2016)"),
    )
}


@dataclass(frozen=True)
class LMTrainSettings:
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50
    clip: float = 1.0
    prompt_tokens: int = 8
    sample_temperature: float = 1.0
    eval_every: int = 0
    keep_best: bool = True


TeacherLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def lr_at(step: int, settings: LMTrainSettings) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to 10 % of it at the last step."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def fit_lm(
    student: nn.Module,
    text: torch.Tensor,
    method: LMMethod,
    settings: LMTrainSettings,
    *,
    seed: int,
    teacher: nn.Module | None = None,
    teacher_logits: TeacherLogits | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Train ``student`` on the blocks ``text`` ``(N, L+1)`` by ``method``; returns what it did.

    ``teacher_logits(index, x)`` gives the teacher's logits for data batches (the cache, or a forward);
    ``teacher`` scores on-policy samples. ``log`` receives a record every ``eval_every`` steps (and at
    the end) with the mean loss and whatever ``evaluate(student)`` returns.

    **The best evaluation is kept** (``keep_best``, on by default): when ``evaluate`` returns
    ``val_ppl``, the student ends with its weights at the evaluation point of the lowest validation
    perplexity — what the image runs do with the best epoch — so a student that starts to overfit is
    compared at its best, not at its last step. ``best_step`` in the result says which. (Evaluations
    run with ``log`` only; the copy is kept on the CPU.)
    """
    divergence = build_loss(method.loss, **method.params) if method.loss else None
    if divergence is not None and (teacher_logits is None or (method.on_policy > 0 and teacher is None)):
        raise ValueError(f"method {method.name} needs the teacher's logits")
    ce = TokenCE()
    decay = [p for p in student.parameters() if p.dim() >= 2]
    no_decay = [p for p in student.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.95)
    )
    device = text.device
    order = torch.Generator().manual_seed(seed)
    coin = torch.Generator().manual_seed(seed + 7919)
    sampler = torch.Generator(device=device).manual_seed(seed + 104729)
    perm, at = torch.randperm(text.shape[0], generator=order), 0
    student.train()
    started, tokens, on_policy_steps = time.perf_counter(), 0, 0
    running: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (val ppl, step, weights)
    for step in range(settings.steps):
        if at + settings.batch_size > perm.numel():
            perm, at = torch.randperm(text.shape[0], generator=order), 0
        index = perm[at : at + settings.batch_size].to(device)
        at += settings.batch_size
        blocks = text[index]
        on_policy = divergence is not None and method.on_policy > 0 and float(torch.rand((), generator=coin)) < method.on_policy
        if on_policy:
            p = settings.prompt_tokens
            blocks = generate(student, blocks[:, :p], blocks.shape[1] - p, temperature=settings.sample_temperature, generator=sampler)
            on_policy_steps += 1
        x, y = blocks[:, :-1], blocks[:, 1:]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, settings)
        s = student(x).float()
        loss = s.new_zeros(())
        if on_policy:
            mask = torch.arange(x.shape[1], device=device)[None, :].expand_as(x) >= settings.prompt_tokens - 1
            with torch.no_grad():
                t = teacher(x).float()
            loss = loss + method.kd_weight * divergence(s, t, mask=mask)
        else:
            if method.ce_weight:
                loss = loss + method.ce_weight * ce(s, target=y)
            if divergence is not None:
                with torch.no_grad():
                    t = teacher_logits(index, x)
                loss = loss + method.kd_weight * divergence(s, t, mask=y != NO_LABEL)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.clip:
            nn.utils.clip_grad_norm_(student.parameters(), settings.clip)
        optimizer.step()
        tokens += x.numel()
        running.append(loss.item())
        last = step + 1 == settings.steps
        if log is not None and (last or (settings.eval_every and (step + 1) % settings.eval_every == 0)):
            record = {"step": step + 1, "loss": sum(running) / len(running), "lr": lr_at(step, settings)}
            if evaluate is not None:
                record.update(evaluate(student))
                student.train()
                ppl = record.get("val_ppl")
                if settings.keep_best and ppl is not None and math.isfinite(ppl) and (best is None or ppl < best[0]):
                    best = (ppl, step + 1, {k: v.detach().to("cpu", copy=True) for k, v in student.state_dict().items()})
            log(record)
            running = []
    seconds = time.perf_counter() - started
    best_step = settings.steps
    if best is not None and best[1] != settings.steps:
        student.load_state_dict(best[2])
        best_step = best[1]
    student.eval()
    return {"steps": settings.steps, "best_step": best_step, "on_policy_steps": on_policy_steps, "train_tokens": tokens, "train_s": seconds}


@torch.inference_mode()
def token_nll(model: nn.Module, blocks: torch.Tensor, batch_size: int = 64) -> tuple[float, int]:
    """Summed next-token negative log-likelihood (nats) of every predicted token of ``blocks``, and their count."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, blocks.shape[0], batch_size):
        b = blocks[start : start + batch_size]
        logits = model(b[:, :-1]).float()
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum"))
        count += b[:, 1:].numel()
    return total, count


def perplexity(model: nn.Module, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """``exp(mean NLL)`` over the predicted tokens of ``blocks``."""
    total, count = token_nll(model, blocks, batch_size)
    return math.exp(total / max(1, count))


@torch.inference_mode()
def mean_token_kl(teacher: nn.Module, student: nn.Module, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean over the predicted tokens of ``blocks`` of ``KL(p_teacher ‖ q_student)`` (nats)."""
    from distil.losses.token_distributions import FKL

    teacher.eval()
    student.eval()
    kl, total = FKL(), 0.0
    for start in range(0, blocks.shape[0], batch_size):
        x = blocks[start : start + batch_size, :-1]
        total += float(kl(student(x).float(), teacher(x).float())) * x.numel()
    return total / max(1, blocks[:, :-1].numel())


def generation_speed(
    model: nn.Module, prompts: torch.Tensor, new_tokens: int, *, temperature: float = 0.0, repeats: int = 1, seed: int = 0
) -> float:
    """New tokens per second generating ``new_tokens`` after each of ``prompts`` ``(B, P)`` at once (KV cache),
    the best of ``repeats`` timed calls after one warm-up call."""
    model.eval()
    generator = torch.Generator(device=prompts.device).manual_seed(seed)
    generate(model, prompts, min(new_tokens, 4), temperature=temperature, generator=generator)
    best = math.inf
    for _ in range(repeats):
        if prompts.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        generate(model, prompts, new_tokens, temperature=temperature, generator=generator)
        if prompts.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return prompts.shape[0] * new_tokens / best
