"""How a model is measured, the same way for every row of the table: size, parameters, CPU latency."""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn


def cpu_latency(model: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1, repeats: int = 50, warmup: int = 10) -> list[float]:
    """Seconds per forward of a random batch, on CPU in eval mode, after ``warmup`` untimed calls."""
    model = copy.deepcopy(model).to("cpu").eval()
    x = torch.randn(batch, *input_shape)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def speed(model: nn.Module, input_shape: tuple[int, ...], *, latency_repeats: int = 50, throughput_repeats: int = 5) -> dict[str, float]:
    """``latency_ms_b1``: median batch-1 forward; ``throughput_b256``: samples/s at batch 256 (median)."""
    b1 = cpu_latency(model, input_shape, batch=1, repeats=latency_repeats)
    b256 = cpu_latency(model, input_shape, batch=256, repeats=throughput_repeats, warmup=2)
    return {
        "latency_ms_b1": statistics.median(b1) * 1e3,
        "throughput_b256": 256 / statistics.median(b256),
    }
