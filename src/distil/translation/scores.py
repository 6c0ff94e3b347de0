"""How a translation model is scored: BLEU and chrF (sacrebleu, on detokenized text), latency per
sentence and target tokens per second.

* BLEU (Papineni et al. 2002) and chrF (Popović 2015) are sacrebleu's ``corpus_bleu`` / ``corpus_chrf``
  with their default settings (BLEU: 13a tokenization, exponential smoothing; chrF: character 6-grams,
  β = 2) on the decoded, detokenized hypotheses against the untouched references, so the numbers are
  comparable with any other sacrebleu score on the same test set.
* Latency per sentence: the median over ``n`` test sentences of typical length, each translated alone
  (batch 1: encode + every decoder step), greedy or beam; what a user waits for one sentence.
* Target tokens/s: the whole test split decoded greedily in batches of 64, output tokens (``[EOS]``
  included) over wall time — throughput.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distil.data.tokens import PAD_ID
from distil.models.seq2seq_decode import decode


def text_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``{"bleu": …, "chrf": …}`` of detokenized ``hypotheses`` against ``references`` (sacrebleu)."""
    import sacrebleu

    return {
        "bleu": round(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score, 2),
    }


def timing_sentences(src: torch.Tensor, n: int) -> list[torch.Tensor]:
    """``n`` test sentences around the median length (each cut to its own length, batch 1)."""
    lengths = (src != PAD_ID).sum(1)
    order = torch.sort(lengths, stable=True).indices
    middle = len(order) // 2
    picked = order[max(0, middle - n // 2) : max(0, middle - n // 2) + n]
    return [src[i : i + 1, : int(lengths[i])] for i in picked.tolist()]


@torch.inference_mode()
def latency_ms(model: nn.Module, sentences: Sequence[torch.Tensor], beam: int, alpha: float, max_len: int) -> float:
    """Median milliseconds to translate one sentence alone (after one warm-up sentence)."""
    model.eval()
    decode(model, sentences[0], beam=beam, alpha=alpha, max_len=max_len)
    times = []
    for s in sentences:
        start = time.perf_counter()
        decode(model, s, beam=beam, alpha=alpha, max_len=max_len)
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 3)


@torch.inference_mode()
def translate_scored(
    model: nn.Module, src: torch.Tensor, references: Sequence[str], target_vocab: Any, *, beam: int, alpha: float, max_len: int
) -> tuple[list[str], dict[str, float]]:
    """The test split translated (batched) and scored; with greedy decoding also target tokens/s."""
    model.eval()
    start = time.perf_counter()
    ids = decode(model, src, beam=beam, alpha=alpha, max_len=max_len, batch_size=64)
    seconds = time.perf_counter() - start
    hypotheses = target_vocab.decode(ids)
    scores = text_scores(hypotheses, references)
    scores["tokens_per_s"] = round(int((ids != PAD_ID).sum()) / seconds, 1)
    return hypotheses, scores
