"""Where torch runs: the device, the CPU thread count, and the machine facts a run records.

Threads: one intra-op thread per usable core, chosen once per command.

The count is a function of the machine (the CPU affinity of this process, which containers narrow),
never of the moment: the thread count changes the order of floating-point sums in convolutions, so
two runs of the same seed with 1 and 2 threads train to different weights (measured: the demo
student's weights differed after two epochs). Reproducible numbers need a fixed count.

On a machine that other jobs share, more threads than free cores is slow — the threads of one op wait
for each other while the cores run someone else (on the 2-core development machine at a load average
of 11, `distil bench speed --quick` took 95 s with 2 threads and 11 s with 1, benchmarks/speed/README.md).
There, pin the count: ``DISTIL_THREADS=1`` (or ``OMP_NUM_THREADS=1``). Inter-op parallelism is 1:
distil runs one op at a time.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_threads() -> int:
    """One thread per usable CPU: fixed for a machine, so the same seed gives the same weights.

    Processes that torchrun starts on one machine (``LOCAL_WORLD_SIZE``) share its CPUs: each takes
    its share, at least one. (torchrun itself sets ``OMP_NUM_THREADS=1`` when it starts several
    processes and the variable is unset, and that setting wins here, as any pinned count does.)
    """
    return max(1, usable_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def set_threads(threads: int | str | None = None) -> int:
    """Set torch's intra-op threads to ``threads``; returns it.

    ``None``: ``$DISTIL_THREADS``, else ``$OMP_NUM_THREADS`` (a user who pinned OpenMP threads keeps
    that choice), else ``auto``.
    """
    choice = threads if threads is not None else os.environ.get("DISTIL_THREADS") or os.environ.get("OMP_NUM_THREADS") or "auto"
    n = auto_threads() if choice == "auto" else int(choice)
    if n < 1:
        raise ValueError(f"threads must be >= 1 or 'auto', got {choice!r}")
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already fixed by earlier parallel work in this process
        pass
    return n


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else the CPU) or an explicit device; CUDA asked for but absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use device: auto or cpu")
    return device


def machine() -> dict[str, Any]:
    """What a summary records about where it ran: platform, processor, CPUs, torch threads and versions."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
