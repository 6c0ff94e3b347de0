"""What every route of one server shares: its settings, the served models and their batchers, the
metrics, feedback capture, and whether it is ready.

:func:`~distil.serve.app.create_app` builds one :class:`ServeState` per app and hands it to the
functions that add the routes, instead of each route closing over many locals. Nothing here is
module-global, so two servers in one process (tests) do not share queues or counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distil.serve.batching import Batcher, BatchSettings, Timing
from distil.serve.feedback import FeedbackWriter, TextFeedbackWriter
from distil.serve.inputs import DEFAULT_MAX_TEXT_BYTES, Batch, Limits
from distil.serve.metrics import ServerMetrics
from distil.serve.protocol import InferError
from distil.serve.repository import ServedModel


@dataclass(frozen=True)
class ServeSettings:
    batch: BatchSettings = field(default_factory=BatchSettings)
    max_body_bytes: int = 8 << 20  # larger requests get 413 before their body is read past this
    timeout_s: float = 10.0  # from queueing to result; past it the client gets 504
    max_request_batch: int = 256  # samples in one request
    top_k: int = 5
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES  # UTF-8 bytes per text; longer texts get 413

    @property
    def limits(self) -> Limits:
        """What one request may hold, as the models' inputs check it."""
        return Limits(self.max_request_batch, self.max_text_bytes)


class ServeState:
    """One server's shared state; the first model is the main one (/predict's default, feedback's source)."""

    def __init__(self, models: list[ServedModel], settings: ServeSettings, feedback: FeedbackWriter | TextFeedbackWriter | None) -> None:
        self.models = models
        self.settings = settings
        self.feedback = feedback
        self.metrics = ServerMetrics()
        self.by_name = {m.name: m for m in models}
        self.main = models[0].name
        self.batchers = {m.name: Batcher(m.backend.predict, settings.batch, self.metrics.batch_size.labels(m.name).observe) for m in models}
        for name, batcher in self.batchers.items():
            self.metrics.queue_depth.labels(name).set_function(lambda b=batcher: b.depth)
        self.ready = False

    def start(self) -> None:
        """Start the batchers (inside the event loop), then answer ready."""
        for batcher in self.batchers.values():
            batcher.start()
        self.ready = True

    async def stop(self) -> None:
        """Answer not ready, stop the batchers, and write the samples feedback still holds."""
        self.ready = False
        for batcher in self.batchers.values():
            await batcher.stop()
        if self.feedback is not None:
            self.feedback.flush()

    def model(self, name: str, version: str | None = None) -> ServedModel:
        """The served model ``name`` (OIP version ``"1"``, the only one), or a 404 InferError."""
        if name not in self.by_name:
            raise InferError(f"unknown model {name!r}; served models: {', '.join(self.by_name)}", 404)
        if version is not None and version != "1":
            raise InferError(f"model {name!r} has no version {version!r}; its only version is 1", 404)
        return self.by_name[name]

    async def prepare(self, encode: Callable[..., Batch], model: ServedModel, *args: Any) -> Batch:
        """``encode(*args)``: a text model's in a worker thread (tokenizing a large request must not stall
        the event loop), a tensor model's inline (a reshape)."""
        return await asyncio.to_thread(encode, *args) if model.is_text else encode(*args)

    async def logits(self, model: ServedModel, batch: Batch) -> np.ndarray:
        """``model``'s logits for ``batch`` (normalized tensors or token ids), through its batcher, within the timeout.

        Inputs the main model answers are captured as feedback (when on), with its predictions.
        """
        return (await self.timed_logits(model, batch))[0]

    async def timed_logits(self, model: ServedModel, batch: Batch) -> tuple[np.ndarray, Timing, list[str]]:
        """:meth:`logits`, where the time went (queueing apart from the forward pass: :class:`Timing`) and
        the feedback ids of the captured samples (empty when none were: feedback off, full, text)."""
        try:
            logits, timing = await asyncio.wait_for(self.batchers[model.name].submit_timed(batch.x), self.settings.timeout_s)
        except TimeoutError:
            raise InferError(f"the request timed out after {self.settings.timeout_s} s in the queue and model", 504) from None
        if self.feedback is not None and model.name == self.main:
            kept = await asyncio.to_thread(self.feedback.capture, model, batch, logits)
            ids = kept if isinstance(kept, list) else []
            self.metrics.feedback.inc(len(kept) if isinstance(kept, list) else kept)
            return logits, timing, ids
        return logits, timing, []

