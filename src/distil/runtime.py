"""Thread settings for CPU work: as many compute threads as there are free cores, no more.

PyTorch starts one intra-op thread per core it sees. On a small machine that other jobs share, the
threads of one op wait for each other while the cores run someone else, and every op pays for it:
on the 2-core development machine with a 1-minute load average of 11, an epoch of a tiny CNN (two
steps of 64 8×8 images) took 2.0 s with 2 threads and 0.06 s with 1, and `distil bench speed --quick`
took 95 s instead of 11 s (see benchmarks/speed.md). So
``auto`` counts the cores this process may use (its CPU affinity, which containers narrow) and
subtracts the ones the 1-minute load average says are busy, keeping at least one. The choice is made
once, when a command starts, so every model of a run is measured under the same setting.
Inter-op parallelism is set to 1: distil runs one op at a time.
"""

from __future__ import annotations

import os

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_threads() -> int:
    """Free cores: usable CPUs minus the busy ones by the 1-minute load average, at least 1."""
    cpus = usable_cpus()
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(cpus, cpus - busy))


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
