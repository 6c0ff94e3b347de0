"""Data-parallel training across processes started by ``torchrun`` (gloo on CPU, NCCL on GPU).

Each process (rank) holds a fixed, equal shard of the training split and trains an identical copy of
the model on it; after every backward the gradients are averaged across ranks, so every rank takes
the same optimizer step and the copies stay bit-identical. The one training loop calls the same five
hooks whether it runs alone (:data:`SINGLE_PROCESS`, which does nothing and keeps single-process
numerics exactly as they were) or under ``torchrun`` (:class:`Distributed`):

- ``start``: every rank must take the same number of steps (a collective that one rank skips waits
  forever), so the shard sizes are compared first; then rank 0's parameters and buffers are
  broadcast, whatever each rank's initialisation was.
- ``local_batch``: ``batch_size`` in the config is the *global* batch; each rank takes
  ``batch_size / world_size`` samples per step, so steps per epoch and the learning-rate schedule
  match a single-process run.
- ``average_gradients``: one all-reduce of one flat buffer holding every trainable parameter's gradient
  (the student's and the objective's connectors) and a has-gradient flag per parameter.
- ``mean``: the epoch's loss and term sums, summed over ranks and divided by the samples seen.
- ``average_buffers`` + ``accuracy``: BatchNorm running statistics are averaged before validation,
  and validation is sharded and its correct counts summed, so every rank sees the same accuracy and
  keeps the same best epoch.

Why not ``torch.nn.parallel.DistributedDataParallel``: distil's objective owns trainable parameters
(connectors, loss parameters) outside the student and runs after the student's forward, and terms
may be skipped on some steps (scheduled weights), which DDP meets only with a wrapper module around
student + objective and ``find_unused_parameters``. One flat all-reduce after ``backward`` needs
neither, leaves the loop unchanged, and guarantees identical weights on every rank by construction.
What it gives up is DDP's overlap of communication with the backward pass (bucketed all-reduces
launched while later layers are still differentiating): irrelevant with gloo on CPU, a few percent of
step time for large models on GPUs.

No state lives here beyond what ``torch.distributed`` keeps: :func:`process_group` yields a
:class:`Distributed` value that callers pass on explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.distributed as torch_dist
from torch import nn

from distil.data import Dataset, Split
from distil.engine.evaluate import accuracy, hits, predict_logits
from distil.errors import ConfigError


class Sync(Protocol):
    """What the training loop asks of its process group (see the module docstring)."""

    rank: int
    world_size: int

    def start(self, model: nn.Module, params: Sequence[nn.Parameter], samples: int) -> None: ...
    def local_batch(self, batch_size: int) -> int: ...
    def order_seed(self, seed: int) -> int: ...
    def average_gradients(self, params: Sequence[nn.Parameter]) -> None: ...
    def mean(self, sums: torch.Tensor, samples: int) -> torch.Tensor: ...
    def average_buffers(self, model: nn.Module) -> None: ...
    def accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float: ...
    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]: ...
    def barrier(self) -> None: ...


@dataclass(frozen=True)
class SingleProcess:
    """One process: every hook is the identity, so a run without ``torchrun`` is what it always was."""

    rank: int = 0
    world_size: int = 1

    def start(self, model: nn.Module, params: Sequence[nn.Parameter], samples: int) -> None:
        pass

    def local_batch(self, batch_size: int) -> int:
        return batch_size

    def order_seed(self, seed: int) -> int:
        return seed

    def average_gradients(self, params: Sequence[nn.Parameter]) -> None:
        pass

    def mean(self, sums: torch.Tensor, samples: int) -> torch.Tensor:
        return sums / samples

    def average_buffers(self, model: nn.Module) -> None:
        pass

    def accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return accuracy(model, x, y)

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return [tensor]

    def barrier(self) -> None:
        pass


SINGLE_PROCESS = SingleProcess()


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job, and the collectives the training loop uses."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and prints."""
        return self.rank == 0

    def describe(self) -> dict[str, object]:
        return {"world_size": self.world_size, "backend": self.backend, "local_world_size": self.local_world_size}

    # -- data -----------------------------------------------------------------------------------
    def shard(self, split: Split, seed: int) -> Split:
        """This rank's fixed share of ``split``: equal sizes on every rank, the remainder dropped.

        Samples are dealt from a permutation seeded by ``seed`` (the same on every rank), so the shards
        are disjoint, each a random sample of the classes (sources may store data sorted by class),
        and fixed for the run: a teacher cache covers exactly the shard's samples. ``len(split) mod
        world_size`` samples (fewer than ``world_size``) are left out rather than repeated: padding
        would count some samples twice in every epoch.
        """
        return split.subset(self.shard_index(len(split), seed))

    def shard_index(self, samples: int, seed: int) -> torch.Tensor:
        """The indices (sorted) of this rank's shard of ``samples`` samples (see :meth:`shard`)."""
        n = samples // self.world_size
        if n == 0:
            raise ConfigError(f"data: {samples} training samples cannot be shared among {self.world_size} processes (torchrun --nproc_per_node × --nnodes); use fewer processes")
        order = torch.randperm(samples, generator=torch.Generator().manual_seed(seed))
        return order[self.rank * n : (self.rank + 1) * n].sort().values

    def shard_dataset(self, data: Dataset, seed: int) -> Dataset:
        """``data`` with its training split replaced by this rank's shard (validation and test whole)."""
        return replace(data, train=self.shard(data.train, seed))

    def check_batch_size(self, batch_size: int, field: str) -> None:
        """``batch_size`` (the global batch) must give every rank the same whole number of samples."""
        if batch_size < self.world_size or batch_size % self.world_size:
            raise ConfigError(
                f"{field}: {batch_size} is the global batch, shared among {self.world_size} processes; "
                f"it must be a multiple of {self.world_size} (each process then takes {field.split('.')[-1]} / {self.world_size})"
            )

    # -- training-loop hooks --------------------------------------------------------------------
    def start(self, model: nn.Module, params: Sequence[nn.Parameter], samples: int) -> None:
        sizes = [0] * self.world_size
        torch_dist.all_gather_object(sizes, samples)
        if len(set(sizes)) > 1:
            raise ConfigError(
                f"training splits differ in size across processes ({sizes}); every process must take the same "
                "number of steps. This strategy or data source does not support torchrun yet"
            )
        with torch.no_grad():
            for t in [*params, *model.buffers()]:
                torch_dist.broadcast(t.data, src=0)

    def local_batch(self, batch_size: int) -> int:
        self.check_batch_size(batch_size, "batch_size")
        return batch_size // self.world_size

    def order_seed(self, seed: int) -> int:
        # Rank 0 draws what a single process draws; other ranks their own batch orders and augmentations.
        return seed + self.rank

    def average_gradients(self, params: Sequence[nn.Parameter]) -> None:
        if not params:
            return
        dtype = params[0].dtype
        for p in params[1:]:
            dtype = torch.promote_types(dtype, p.dtype)
        device = params[0].device
        parts = [p.grad.reshape(-1).to(dtype) if p.grad is not None else torch.zeros(p.numel(), dtype=dtype, device=device) for p in params]
        has_grad = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
        flat = torch.cat([*parts, has_grad])
        torch_dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        flags = flat[-len(params) :]
        for p, flag in zip(params, flags.tolist()):
            n = p.numel()
            # A parameter that no rank differentiated keeps no gradient, as it would in one process
            # (with a zero gradient, weight decay and momentum would still move it).
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype) if flag > 0 else None
            offset += n

    def mean(self, sums: torch.Tensor, samples: int) -> torch.Tensor:
        total = sums.clone()
        torch_dist.all_reduce(total)
        return total / (samples * self.world_size)

    def average_buffers(self, model: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running mean and variance) over ranks.

        Each rank's statistics come from its own shard; their mean is the statistics of all the data
        (exact for running means; for variances it leaves out the spread between the ranks' means,
        negligible for random shards). SyncBatchNorm would instead normalise every training batch over
        all ranks: a collective per BatchNorm layer per step, and numerics unlike a single process.
        """
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.reshape(-1).float() for b in buffers])
        torch_dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        with torch.no_grad():
            for b in buffers:
                b.copy_(flat[offset : offset + b.numel()].view_as(b))
                offset += b.numel()

    def accuracy(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy on all of ``x``, each rank predicting a contiguous part: the same value on every rank."""
        if len(x) == 0:
            raise ValueError("accuracy of an empty split")
        part = slice(self.rank * len(x) // self.world_size, (self.rank + 1) * len(x) // self.world_size)
        correct, counted = hits(predict_logits(model, x[part]), y[part]) if part.stop > part.start else (0, 0)
        counts = torch.tensor([correct, counted], dtype=torch.int64, device=x.device)
        torch_dist.all_reduce(counts)
        return counts[0].item() / counts[1].item()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and dtype on all), in rank order, on the CPU: per-rank
        RNG states for a checkpoint. A collective: every rank calls it."""
        local = tensor.to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, local)
        return [p.cpu() for p in parts]

    def barrier(self) -> None:
        torch_dist.barrier()


def launched() -> bool:
    """Whether this process is one of several that ``torchrun`` (or a compatible launcher) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or not launched by torchrun: the process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def local_world_size() -> int:
    """Processes on this machine (``LOCAL_WORLD_SIZE`` from torchrun; 1 otherwise)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _device(name: str, local_rank: int, local_world: int) -> torch.device:
    """The device of this rank: CUDA (one GPU per process, ``cuda:LOCAL_RANK``) or the CPU."""
    kind = torch.device("cuda" if torch.cuda.is_available() else "cpu").type if name == "auto" else torch.device(name).type
    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise ConfigError(f"device: {name!r} is not supported with torchrun (use cpu or cuda)")
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but CUDA is not available here; use device: auto or cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(f"device: torchrun started {local_world} processes on this machine but it has {torch.cuda.device_count()} GPU(s); use --nproc_per_node {torch.cuda.device_count()}")
    return torch.device("cuda", local_rank)


@contextmanager
def process_group(device: str = "auto") -> Iterator[Distributed | None]:
    """Join the ``torchrun`` job this process belongs to for the ``with`` block (``None`` when alone).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous variables
    (``MASTER_ADDR``/``MASTER_PORT``) that torchrun sets; the backend is NCCL for CUDA devices and
    gloo for the CPU. An already initialised default group (a caller that set one up) is used as is.
    """
    if not launched():
        yield None
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = local_world_size()
    dev = _device(device, local_rank, local_world)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owner = not torch_dist.is_initialized()
    if owner:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            torch_dist.init_process_group(backend, device_id=dev)
        else:
            torch_dist.init_process_group(backend)
    try:
        yield Distributed(rank, world, local_rank, local_world, dev, torch_dist.get_backend())
        if owner:
            # Every rank leaves together: a rank that tears gloo down while its peer is still finishing
            # (rank 0 writes the outputs) can abort in gloo's threads ("terminate called without an
            # active exception"). Only on a normal exit: after an error a peer may never arrive.
            torch_dist.barrier()
    finally:
        if owner:
            torch_dist.destroy_process_group()

