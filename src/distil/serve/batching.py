"""Dynamic batching: requests for one model are gathered into one forward pass.

A worker task takes the first waiting request, then keeps taking more until the batch holds
``max_batch`` samples or ``max_delay_ms`` has passed since it started gathering; the forward pass
runs in a thread so the event loop keeps accepting requests meanwhile. Token ids of requests of
different lengths are padded to the longest of the batch (:func:`join`), and each request gets its
own rows back, a tagger's cut to its own length (:func:`own_rows`). The queue holds at most
``queue_size`` requests: :meth:`Batcher.submit` raises :class:`QueueFull` beyond that (the app
answers 503), so memory stays bounded however many clients push.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from distil.serve.inputs import pad_rows


@dataclass(frozen=True)
class BatchSettings:
    max_batch: int = 32  # samples per forward pass (a single larger request runs alone)
    #: how long the first request of a batch waits for company. 0: none — a batch is whatever queued up while
    #: the last forward pass ran (for the demo's ONNX student, 8 clients: 1,216 against 460 requests/s at 2 ms,
    #: p99 16 against 48 ms, one run on a shared CPU; benchmarks/serve/README.md)
    max_delay_ms: float = 0.0
    queue_size: int = 256  # requests waiting, at most
    #: run a batch's forward pass on the event loop itself, not in a worker thread, while the last one took
    #: under this many ms (0: always a thread). A thread hand-off costs tens of µs and a wake-up; a tiny
    #: ONNX student computes a batch of 8 in about as long, so inline is faster — and blocks the loop only that long.
    inline_ms: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Where one request's time went inside the server: waiting for its batch, and the batch's forward pass."""

    queue_ms: float  # from submit to the start of its batch's forward pass
    compute_ms: float  # the forward pass of the whole batch (the model's own time)
    batch: int  # samples in that forward pass

    def as_dict(self) -> dict[str, float | int]:
        return {"queue_ms": round(self.queue_ms, 3), "compute_ms": round(self.compute_ms, 3), "batch": self.batch}


class QueueFull(Exception):
    """The model's queue is full: the client should retry later (HTTP 503)."""


Item = tuple[np.ndarray, asyncio.Future, float]  # inputs, their answer, when they were submitted


class Batcher:
    """Batches ``predict`` calls of one model; ``start`` inside the event loop, ``stop`` at shutdown."""

    def __init__(
        self, predict: Callable[[np.ndarray], np.ndarray], settings: BatchSettings, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.predict = predict
        self.settings = settings
        self.on_batch = on_batch
        self._queue: asyncio.Queue[Item] | None = None
        self._arrived: asyncio.Event | None = None
        self._carry: Item | None = None  # a request that did not fit the last batch: first in the next
        self._task: asyncio.Task | None = None
        self._last_compute_s = float("inf")  # the first batch always runs in a thread

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return (self._queue.qsize() if self._queue else 0) + (self._carry is not None)

    def start(self) -> None:
        self._queue = asyncio.Queue(self.settings.queue_size)
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The logits of ``x`` (a batch), once its batch has run; QueueFull when the queue is."""
        return (await self.submit_timed(x))[0]

    async def submit_timed(self, x: np.ndarray) -> tuple[np.ndarray, Timing]:
        """The logits of ``x`` and where its time went (:class:`Timing`); QueueFull when the queue is full."""
        assert self._queue is not None and self._arrived is not None, "Batcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((x, future, time.perf_counter()))
        except asyncio.QueueFull:
            raise QueueFull(f"the queue holds {self.settings.queue_size} requests already; retry later") from None
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            live = [item for item in batch if not item[1].done()]  # timed-out requests are dropped
            if not live:
                continue
            xs = join([x for x, _, _ in live])
            if self.on_batch:
                self.on_batch(len(xs))
            began = time.perf_counter()
            try:
                if 1000 * self._last_compute_s < self.settings.inline_ms:
                    logits, compute_s = _timed(self.predict, xs)
                else:
                    logits, compute_s = await asyncio.to_thread(_timed, self.predict, xs)
                self._last_compute_s = compute_s
            except Exception as err:  # noqa: BLE001  a model failure fails the requests of this batch, not the server
                for _, f, _ in live:
                    if not f.done():
                        f.set_exception(err)
                continue
            start = 0
            for x, f, submitted in live:
                if not f.done():
                    f.set_result((own_rows(logits, start, x), Timing(1000 * (began - submitted), 1000 * compute_s, len(xs))))
                start += len(x)

    async def _gather(self) -> list[Item]:
        assert self._queue is not None and self._arrived is not None
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry, None
        if first is None:
            first = await self._queue.get()
        items, size = [first], len(first[0])
        deadline = loop.time() + self.settings.max_delay_ms / 1000
        while size < self.settings.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
                continue
            if size + len(item[0]) > self.settings.max_batch:
                self._carry = item
                break
            items.append(item)
            size += len(item[0])
        return items


def _timed(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> tuple[np.ndarray, float]:
    """``predict(x)`` and the seconds it took, measured in the worker thread (not the event loop's wait)."""
    start = time.perf_counter()
    out = predict(x)
    return out, time.perf_counter() - start


def join(parts: list[np.ndarray]) -> np.ndarray:
    """The requests' batches as one: token ids of different lengths are right-padded with 0 to the longest."""
    if len(parts) == 1:
        return parts[0]
    if parts[0].dtype.kind in "iu" and parts[0].ndim == 2 and len({p.shape[1] for p in parts}) > 1:
        return pad_rows(parts)
    return np.concatenate(parts)


def own_rows(logits: np.ndarray, start: int, x: np.ndarray) -> np.ndarray:
    """The rows of ``logits`` that answer the request ``x`` (from row ``start``); a tagger's token rows cut
    back to the request's own length (padding does not change the outputs at real tokens)."""
    rows = logits[start : start + len(x)]
    if rows.ndim == 3 and x.ndim == 2:
        rows = rows[:, : x.shape[1]]
    return rows
