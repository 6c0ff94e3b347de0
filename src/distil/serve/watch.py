"""Hot swap: the server picks up the versions ``distil loop`` promotes into the run directory.

:class:`VersionWatcher` looks at ``RUN/versions/`` (:mod:`distil.session.versions`) every
``poll_s`` seconds — and at once when ``POST /admin/reload`` asks (localhost only, with the admin
token) — loads every complete version it does not serve yet (its ``summary.json`` is written last,
so a half-written promotion is not seen), in a worker thread, and hands it to
:meth:`ServeState.add_version`, which makes it the newest without failing a request in flight. A
version that fails to load is logged and not tried again.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from distil.serve.repository import version_model
from distil.serve.state import ServeState
from distil.session.versions import promoted_versions

log = logging.getLogger("distil.serve")


class VersionWatcher:
    def __init__(self, state: ServeState, run: Path, poll_s: float = 1.0) -> None:
        self.state = state
        self.run_dir = Path(run)
        self.poll_s = poll_s
        self.failed: set[int] = set()
        self.base = state.models[0]  # version 1 of the main model: what every version's input and classes are
        self._lock: asyncio.Lock | None = None

    async def scan(self) -> list[str]:
        """Load and serve the promoted versions not served yet, oldest first; returns their numbers."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:  # the poll and an admin reload must not load one version twice
            base = self.base
            served = set(self.state.version_list(base.name))
            added = []
            for version in await asyncio.to_thread(promoted_versions, self.run_dir):
                if str(version.number) in served or version.number in self.failed:
                    continue
                try:
                    model = await asyncio.to_thread(version_model, base, version)
                except Exception as err:  # noqa: BLE001  a broken version must not stop the server or the watcher
                    log.warning("version %s of %s not served: %s", version.number, self.run_dir, err)
                    self.failed.add(version.number)
                    continue
                self.state.add_version(model)
                added.append(model.version)
                log.info("serving %s version %s (%s)", model.name, model.version, version.folder)
            return added

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.scan()
            except Exception:
                log.exception("scanning %s for versions failed", self.run_dir)
