"""The teacher's side of language-model distillation: per-token top-k logits cached, and cached teacher samples.

**Top-k logits per token** (:class:`TokenLogitCache`). A causal LM's outputs on the training blocks are
``N × L × V`` logits — 17,310 blocks × 64 × 2,048 tokens are 9 GB in fp32 — so the cache keeps, per
position, the ``top_k`` largest logits in fp16 with their ids (int16, int32 past 32,767 tokens) and one fp16
logit ``rest`` that gives every other token the same share of their total probability at ``T``: the
image views' :func:`~distil.engine.teacher_sources.encode_logits`, applied to the ``(N·L, V)`` rows.
Memory: ``N · L · (k · (2 + id bytes) + 2)`` bytes (``nbytes``); at the default k = 256 that is 1 kB per
token, 1.1 GB for 1.1M tokens, against 8 kB per token exact. Decoded rows are logits again, so every
token loss reads them unchanged; the top-k probabilities and the residual mass are exact at ``T`` up
to fp16 rounding, and only how the residual mass spreads over the other tokens is lost. That loss is
measured while the cache is built — the mean ``KL(teacher ‖ cached)`` per token and the mass kept
(:attr:`TokenLogitCache.kl_to_exact`, :attr:`~TokenLogitCache.mass_kept`) — because it is not small for
a language model: k = 32 of 2,048 lost 0.28 nats per token of the KJV benchmark's teacher.

**Sequence-level KD** (:func:`teacher_samples`; Kim & Rush 2016). The teacher continues a prompt of
``prompt_tokens`` from each of ``n`` training blocks (drawn with ``seed``) to a full block by sampling at
``temperature`` (0: greedy, as beam search of width 1); the blocks are the student's training text.

Both live in the :class:`~distil.engine.teacher_store.TeacherStore` under a key of the teacher's weights,
the input blocks and the settings, so a second run (or the next student) reads them from disk.
"""

from __future__ import annotations

import torch
from torch import nn

from distil.engine.teacher_sources import decode_logits, encode_logits
from distil.engine.teacher_store import TeacherStore, cache_key
from distil.models.generate import generate

TOKEN_LOGITS = "lm_token_topk"
SAMPLES = "lm_teacher_samples"
FIDELITY = "fidelity"  # [mean KL(teacher ‖ cached), mean mass kept], stored beside the logits


class TokenLogitCache:
    """Top-k compressed teacher logits of every position of ``blocks[:, :-1]``; ``cache[index]`` → ``(B, L, V)`` logits."""

    def __init__(
        self,
        teacher: nn.Module,
        blocks: torch.Tensor,
        *,
        vocab_size: int,
        top_k: int = 32,
        T: float = 1.0,
        batch_size: int = 64,
        store: TeacherStore | None = None,
    ) -> None:
        self.vocab_size = vocab_size
        self.top_k = min(top_k, vocab_size)
        self.T = T
        # "measured": caches written before the truncation was measured hold no fidelity; a new key rebuilds them
        settings = {"top_k": self.top_k, "T": T if self.top_k < vocab_size else None, "measured": True}
        key = cache_key(teacher, blocks, TOKEN_LOGITS, settings)
        store = store or TeacherStore()
        loaded = store.load(key)
        self.from_disk = loaded is not None
        self.outputs = loaded if loaded is not None else self._build(teacher, blocks, batch_size)
        if loaded is None:
            store.save(key, self.outputs, {"kind": TOKEN_LOGITS, **settings, "blocks": list(blocks.shape)})

    @torch.inference_mode()
    def _build(self, teacher: nn.Module, blocks: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        was_training = teacher.training
        teacher.eval()
        parts: list[dict[str, torch.Tensor]] = []
        kl_sum = mass_sum = 0.0
        for start in range(0, blocks.shape[0], batch_size):
            x = blocks[start : start + batch_size, :-1]
            logits = teacher(x).float().reshape(-1, self.vocab_size)
            encoded = encode_logits(logits, self.top_k, self.T)
            if "indices" in encoded and self.vocab_size > 32767:
                encoded["indices"] = logits.topk(self.top_k, dim=1).indices.to(torch.int32)
            kl, mass = truncation_loss(logits, decode_logits(encoded["values"], encoded.get("indices"), encoded.get("rest"), self.vocab_size), self.top_k)
            kl_sum, mass_sum = kl_sum + float(kl.sum()), mass_sum + float(mass.sum())
            parts.append({k: v.reshape(x.shape[0], x.shape[1], *v.shape[1:]).cpu() for k, v in encoded.items()})  # kept in host memory
        teacher.train(was_training)
        tokens = blocks.shape[0] * (blocks.shape[1] - 1)
        fidelity = torch.tensor([kl_sum / max(1, tokens), mass_sum / max(1, tokens)], dtype=torch.float64)
        return {**{k: torch.cat([p[k] for p in parts]) for k in parts[0]}, FIDELITY: fidelity}

    @property
    def kl_to_exact(self) -> float | None:
        """Mean per-token ``KL(teacher ‖ cached)`` in nats: what the top-k truncation loses (None: a cache
        written before this was measured)."""
        return float(self.outputs[FIDELITY][0]) if FIDELITY in self.outputs else None

    @property
    def mass_kept(self) -> float | None:
        """Mean teacher probability (at T = 1) of the k kept tokens."""
        return float(self.outputs[FIDELITY][1]) if FIDELITY in self.outputs else None

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """The decoded ``(B, L, V)`` fp32 logits of blocks ``index``, on ``index``'s device (the cache stays on the host)."""
        rows = {k: v[index.cpu()].to(index.device) for k, v in self.outputs.items() if k != FIDELITY}
        b, length = rows["values"].shape[:2]
        flat = {k: v.reshape(b * length, *v.shape[2:]) for k, v in rows.items()}
        logits = decode_logits(flat["values"], flat.get("indices"), flat.get("rest"), self.vocab_size)
        return logits.view(b, length, self.vocab_size)

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for k, v in self.outputs.items() if k != FIDELITY)

    def describe(self) -> dict:
        tokens = self.outputs["values"].shape[0] * self.outputs["values"].shape[1]
        return {
            "top_k": self.top_k,
            "T": self.T,
            "bytes": self.nbytes,
            "bytes_per_token": self.nbytes / max(1, tokens),
            "kl_to_exact": self.kl_to_exact,
            "mass_kept": self.mass_kept,
            "from_disk": self.from_disk,
        }


def truncation_loss(exact: torch.Tensor, cached: torch.Tensor, top_k: int, rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``(N, V)`` logits: ``KL(p ‖ p̂)`` with ``p = softmax(exact)`` and ``p̂ = softmax(cached)``
    (nats; what a student fitting the cache misses of the teacher) and the mass ``p`` gives its top ``k``.
    Computed ``rows`` at a time, so a large vocabulary does not multiply the build's peak memory."""
    kl, mass = [], []
    for start in range(0, exact.shape[0], rows):
        log_p, log_q = exact[start : start + rows].log_softmax(-1), cached[start : start + rows].log_softmax(-1)
        p = log_p.exp()
        kl.append((p * (log_p - log_q)).sum(-1).clamp_min(0))
        mass.append(p.topk(min(top_k, p.shape[-1]), dim=-1).values.sum(-1))
    return torch.cat(kl), torch.cat(mass)


def teacher_samples(
    teacher: nn.Module,
    blocks: torch.Tensor,
    *,
    n: int,
    prompt_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    store: TeacherStore | None = None,
) -> tuple[torch.Tensor, bool]:
    """``n`` blocks of ``blocks``'s width written by the teacher from the first ``prompt_tokens`` of
    ``n`` training blocks (drawn with ``seed``); and whether they came from disk."""
    width = blocks.shape[1]
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(blocks.shape[0], generator=generator)[:n] if n <= blocks.shape[0] else torch.randint(blocks.shape[0], (n,), generator=generator)
    prompts = blocks[chosen, :prompt_tokens]
    settings = {"n": n, "prompt_tokens": prompt_tokens, "temperature": temperature, "seed": seed, "width": width}
    store = store or TeacherStore()
    key = cache_key(teacher, prompts, SAMPLES, settings)
    loaded = store.load(key)
    if loaded is not None:
        return loaded["blocks"].to(blocks.device, copy=True), True
    sampler = torch.Generator(device=blocks.device).manual_seed(seed + 1)
    out = [generate(teacher, prompts[s : s + batch_size], width - prompt_tokens, temperature=temperature, generator=sampler) for s in range(0, n, batch_size)]
    samples = torch.cat(out)
    store.save(key, {"blocks": samples}, {"kind": SAMPLES, **settings})
    return samples, False
