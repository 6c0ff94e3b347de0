"""How a model is measured, the same way for every row of the table: accuracy, size, parameters, latency.

:func:`measure` is the one function behind every row — the teacher and students of a run, and each
pruned, int8 or ONNX model of ``distil compress`` — so rows differ only in what runs, never in how it
is timed. A *runtime* says how a model is run (``RUNTIMES``): PyTorch eager (fp32 or int8 modules),
``torch.compile``, or an ONNX Runtime session wrapped as a module (``distil.compress.export.OnnxModel``).
Latency is timed on the CPU with random inputs after warm-up; p50 and p95 at batch 1 and 256.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from distil.data.tokens import is_tokens, trim, typical_row


def _compiled(model: nn.Module) -> nn.Module:
    return torch.compile(model, dynamic=False)


#: How a model is prepared to run in each runtime; the measurement itself is the same for all.
RUNTIMES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "torch": lambda m: m,  # eager fp32
    "torch-int8": lambda m: m,  # eager, int8 modules (fbgemm/x86 kernels)
    "torch-compiled": _compiled,  # torch.compile (inductor); compile time is spent in the warm-up
    "onnxruntime": lambda m: m,  # an OnnxModel: the session runs, torch only passes tensors
}


#: What a model is timed on: the shape of one sample (random inputs), or one real sample ``(1, ...)``.
TimingInput = tuple[int, ...] | torch.Tensor


def timing_input(data: Any) -> TimingInput:
    """What rows of ``data`` (a :class:`~distil.data.Dataset`) are timed on.

    Numeric inputs: their shape (random values of it; speed does not depend on them). Text: a typical
    sentence, the test sentence of median length, cut to its tokens — a padded row would time the
    padding too.
    """
    x = data.test.x
    if not is_tokens(x):
        return tuple(data.input_shape)
    row = typical_row(x)
    return trim(x[row : row + 1]).cpu()


def _batch_of(sample: TimingInput, batch: int) -> torch.Tensor:
    if isinstance(sample, torch.Tensor):
        return sample.expand(batch, *sample.shape[1:]).contiguous()
    return torch.randn(batch, *sample)


def tokenize_latency_ms(text: Any, repeats: int = 200) -> float:
    """Median milliseconds to tokenize one typical sentence of ``text`` (a dataset's TextInfo) into ids,
    as the server does: a tagger's sentence is split into words first (``encode_words``)."""
    sentence = text.typical_sentence

    def tokenize() -> object:
        return text.encode_words(sentence) if text.task == "tag" else text.encode([sentence])

    tokenize()  # loads the tokenizer
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tokenize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def cpu_latency(model: nn.Module, sample: TimingInput, *, batch: int = 1, repeats: int = 50, warmup: int = 10, copy_model: bool = True) -> list[float]:
    """Seconds per forward of a batch, on CPU in eval mode, after ``warmup`` untimed calls.

    ``sample``: the shape of one input (the batch is random) or one real input ``(1, ...)`` repeated
    ``batch`` times (see :func:`timing_input`). The model is deep-copied first (the caller's stays
    where and as it was) unless ``copy_model`` is false, for a model that is already a CPU copy (a
    compiled one cannot be copied).
    """
    model = (copy.deepcopy(model) if copy_model else model).to("cpu").eval()
    x = _batch_of(sample, batch)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation between order statistics."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def speed(model: nn.Module, sample: TimingInput, *, latency_repeats: int = 50, throughput_repeats: int = 5, copy_model: bool = True) -> dict[str, float]:
    """Latency p50/p95 (ms) at batch 1 and 256 and throughput at 256 (samples/s, from the median) on ``sample`` (see :func:`cpu_latency`)."""
    b1 = cpu_latency(model, sample, batch=1, repeats=latency_repeats, copy_model=copy_model)
    b256 = cpu_latency(model, sample, batch=256, repeats=throughput_repeats, warmup=2, copy_model=copy_model)
    return {
        "latency_ms_b1": statistics.median(b1) * 1e3,
        "latency_ms_b1_p95": percentile(b1, 0.95) * 1e3,
        "latency_ms_b256": statistics.median(b256) * 1e3,
        "latency_ms_b256_p95": percentile(b256, 0.95) * 1e3,
        "throughput_b256": 256 / statistics.median(b256),
    }


def count_nonzeros(model: nn.Module) -> int:
    """Non-zero parameter entries (what unstructured pruning lowers; the dense size stays)."""
    return sum(int(torch.count_nonzero(p).item()) for p in model.parameters())


def measure(
    model: nn.Module,
    sample: TimingInput,
    *,
    runtime: str = "torch",
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    size_bytes: int | None = None,
    counted: nn.Module | None = None,
    latency_repeats: int = 50,
    throughput_repeats: int = 5,
) -> dict[str, Any]:
    """One row's measurements: runtime, accuracy on ``test`` (x, y), params and non-zeros, size, speed.

    ``counted`` is the fp32 module whose parameters are counted when ``model`` has none of its own
    (an ONNX session, an int8 model with packed weights); by default ``model`` itself.
    """
    from distil.engine.evaluate import accuracy

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    run = RUNTIMES[runtime](copy.deepcopy(model).cpu().eval())
    counted = counted if counted is not None else model
    row: dict[str, Any] = {"runtime": runtime}
    if test is not None:
        row["accuracy"] = accuracy(run, test[0].cpu(), test[1].cpu())
    row["params"] = sum(p.numel() for p in counted.parameters())
    row["nonzeros"] = count_nonzeros(counted)
    if size_bytes is not None:
        row["size_bytes"] = int(size_bytes)
    timed = speed(run, sample, latency_repeats=latency_repeats, throughput_repeats=throughput_repeats, copy_model=False)
    row.update({k: round(v, 4) if k.startswith("latency") else round(v, 1) for k, v in timed.items()})
    return row
