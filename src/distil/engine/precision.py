"""Mixed precision for training: the forward passes in bfloat16 under autocast, everything else in fp32.

Parameters, optimizer state and gradients stay fp32 (bf16 has fp32's exponent range, so no loss
scaling is needed); only the matmuls and convolutions of the student's and an online teacher's
forward run in bf16. The loss maths run in fp32 whatever the caller does (:class:`Objective` upcasts
its inputs and turns autocast off): autocast would leave ``log_softmax`` of bf16 logits in bf16, whose
8-bit mantissa blurs the small probability differences a KD term is made of, and would run the
matmuls inside losses (relation losses' Gram matrices, CRD's embeddings) in bf16. Evaluation
(validation, test, the table) stays fp32: it measures the fp32 weights that are saved and deployed.
A teacher's cached outputs are computed once in fp32; an online teacher's forward runs under autocast.

Whether bf16 pays off depends on the hardware and the model. Measured on a 2-core AMD EPYC with
avx512_bf16 (benchmarks/precision/README.md): CNN epochs about 1.3–2× faster at the same accuracy, but the
tiny MNIST-1D MLP slower (its steps are too small for the casts to pay). So ``auto`` means bf16 where
the hardware computes bf16 natively (a CUDA device that supports it; a CPU with avx512_bf16 or AMX)
and fp32 elsewhere, where bf16 would be emulated. The default stays fp32: bf16 changes the trained
weights, and a run should give the same weights on every machine unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

# name → autocast dtype (None: plain fp32). "auto" is resolved per device by :func:`resolve_precision`.
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
PRECISIONS = (*DTYPES, "auto")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on a CUDA device with bf16 support, else ``fp32``; the others are kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


# x86 flags of bf16 arithmetic in hardware (Zen 4 and Cooper Lake have the first; Sapphire Rapids AMX).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bf16 in hardware (Linux: its /proc/cpuinfo flags; elsewhere: assume not)."""
    try:
        return bool(NATIVE_BF16_FLAGS & set(cpuinfo.read_text().split()))
    except OSError:
        return False


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed forwards in ``precision`` on ``device`` (fp32: a no-op)."""
    dtype = DTYPES[resolve_precision(precision, device)]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off: what runs inside computes in the dtype of its (fp32) inputs."""
    if not torch.is_autocast_enabled(device.type):  # fp32 training: nothing to switch off, every step
        yield
        return
    with torch.autocast(device_type=device.type, enabled=False):
        yield
