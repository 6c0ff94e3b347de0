"""What every route of one server shares: its settings, the served models and their batchers, the
metrics, feedback capture, and whether it is ready.

**Versions.** Each served name has numbered versions (Open Inference Protocol model versions): a
run's own student is version 1, and ``distil loop`` promotions add 2, 3, ... (``RUN/versions/N``).
A request without a version goes to the newest. :meth:`ServeState.add_version` starts the new
version's batcher *before* it becomes the newest, and a replaced version is unloaded only after a
grace period longer than the request timeout, so a request in flight always finishes on the version
it started with: a swap fails no request. The newest ``keep_versions`` stay loaded; older ones are
listed but not ready (503).

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
    max_in_flight: int = 1024  # requests being handled at once; beyond it 503 (JSON) at once
    keep_versions: int = 3  # versions of a model kept loaded; older ones answer 503 (not ready)
    poll_s: float = 1.0  # how often a watched run directory is looked at for promoted versions
    admin_token: str | None = None  # POST /admin/reload (localhost only) needs it; None: no admin route

    @property
    def limits(self) -> Limits:
        """What one request may hold, as the models' inputs check it."""
        return Limits(self.max_request_batch, self.max_text_bytes)


class ServeState:
    """One server's shared state; the first model is the main one (/predict's default, feedback's source)."""

    def __init__(self, models: list[ServedModel], settings: ServeSettings, feedback: FeedbackWriter | TextFeedbackWriter | None) -> None:
        self.settings = settings
        self.feedback = feedback
        self.metrics = ServerMetrics()
        self.main: str | None = models[0].name if models else None  # teachable mode may start with no model
        self.versions: dict[str, dict[str, ServedModel]] = {}  # name → version → model (loaded ones)
        self.listed: dict[str, list[str]] = {}  # name → every version it has had, oldest first
        self.newest: dict[str, str] = {}
        self.batchers: dict[tuple[str, str], Batcher] = {}
        self.running = False
        for m in models:
            self._register(m)
        self.ready = False

    @property
    def models(self) -> list[ServedModel]:
        """The newest version of each served name, the main one first."""
        return [self.versions[name][version] for name, version in self.newest.items()]

    @property
    def by_name(self) -> dict[str, ServedModel]:
        return {m.name: m for m in self.models}

    def _register(self, model: ServedModel) -> Batcher:
        key = (model.name, model.version)
        if key in self.batchers:
            raise ValueError(f"model {model.name!r} version {model.version} is served already")
        batcher = Batcher(model.backend.predict, self.settings.batch, self.metrics.batch_size.labels(model.name, model.version).observe)
        self.metrics.queue_depth.labels(model.name, model.version).set_function(lambda b=batcher: b.depth)
        self.batchers[key] = batcher
        self.versions.setdefault(model.name, {})[model.version] = model
        self.listed.setdefault(model.name, []).append(model.version)
        if model.name not in self.newest or int(model.version) > int(self.newest[model.name]):
            self.newest[model.name] = model.version
        return batcher

    def start(self, ready: bool = True) -> None:
        """Start the batchers (inside the event loop), then answer ready (unless the caller will)."""
        for batcher in self.batchers.values():
            batcher.start()
        self.running = True
        self.ready = ready

    async def stop(self) -> None:
        """Answer not ready, stop the batchers, and write the samples feedback still holds."""
        self.ready = False
        self.running = False
        for batcher in list(self.batchers.values()):
            await batcher.stop()
        if self.feedback is not None:
            self.feedback.flush()

    def add_version(self, model: ServedModel, new_name: bool = False) -> None:
        """Serve a new version of a served name (inside the event loop): its batcher runs before it becomes
        the newest; versions beyond ``keep_versions`` are unloaded after a grace longer than the timeout.
        ``new_name``: the name may be new (teachable mode's first model)."""
        if model.name not in self.versions and not new_name:
            raise ValueError(f"{model.name!r} is not served; versions are added to served names")
        batcher = self._register(model)
        self.main = self.main or model.name
        if self.running:
            batcher.start()
        if self.newest[model.name] == model.version:
            self.metrics.swaps.labels(model.name).inc()
        loaded = sorted(self.versions[model.name], key=int)
        for old in loaded[: max(0, len(loaded) - self.settings.keep_versions)]:
            asyncio.get_running_loop().call_later(self.settings.timeout_s + 1.0, self._unload, model.name, old)

    def _unload(self, name: str, version: str) -> None:
        if version == self.newest.get(name) or version not in self.versions.get(name, {}):
            return
        del self.versions[name][version]
        batcher = self.batchers.pop((name, version))
        self.metrics.queue_depth.remove(name, version)
        asyncio.get_running_loop().create_task(batcher.stop())

    def model(self, name: str | None, version: str | None = None) -> ServedModel:
        """The served model ``name`` at ``version`` (default: the newest), or a 404/503 InferError."""
        if name is None:
            raise InferError("no model is served yet (teachable mode: name classes, add examples and train at /teach)", 404)
        if name not in self.versions:
            raise InferError(f"unknown model {name!r}; served models: {', '.join(self.versions)}", 404)
        if version is None:
            return self.versions[name][self.newest[name]]
        if version in self.versions[name]:
            return self.versions[name][version]
        if version in self.listed[name]:
            raise InferError(f"model {name!r} version {version} is unloaded (the newest {self.settings.keep_versions} stay loaded; newest: {self.newest[name]})", 503)
        raise InferError(f"model {name!r} has no version {version!r}; its versions: {', '.join(self.listed[name])}", 404)

    def version_list(self, name: str) -> list[str]:
        return list(self.listed.get(name, []))

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
        the feedback ids of the captured samples (empty when none were: feedback off, full, a tagger's texts)."""
        try:
            logits, timing = await asyncio.wait_for(self.batchers[(model.name, model.version)].submit_timed(batch.x), self.settings.timeout_s)
        except TimeoutError:
            raise InferError(f"the request timed out after {self.settings.timeout_s} s in the queue and model", 504) from None
        self.metrics.answered.labels(model.name, model.version).inc(len(batch.x))
        self.metrics.compute.labels(model.name, model.version).observe(timing.compute_ms / 1000)
        if self.feedback is not None and model.name == self.main:
            kept = await asyncio.to_thread(self.feedback.capture, model, batch, logits)
            ids = kept if isinstance(kept, list) else []
            self.metrics.feedback.inc(len(kept) if isinstance(kept, list) else kept)
            return logits, timing, ids
        return logits, timing, []

