"""Big logs, built once per run and shared by the cases that read them.

Logs are built with ``append_batch`` through a store without inline projections and, on
sqlite, with ``durability="normal"``: building is setup, not a measured figure, and the events
are legal transitions by construction (the workload is validated by the append figures). The
log is byte for byte what a validating store would have written.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import adapters, workload
from benchmarks.config import Config
from chanlog import EventStore, MemoryBackend
from chanlog.backends.base import Backend

__all__ = ["BUILD_CHUNK", "TARGET", "LogCache"]

#: The entity the reconstruction figures read.
TARGET = workload.channel_id(7 * 10**9)
BUILD_CHUNK = 5_000


def fill(store: EventStore, total: int, target_events: int) -> None:
    """Append a :func:`~benchmarks.workload.log_events` log to ``store`` in chunks."""
    events = workload.log_events(total, TARGET, target_events)
    while chunk := list(itertools.islice(events, BUILD_CHUNK)):
        store.append_batch(chunk)


class LogCache:
    """Builds each (backend kind, size, target size) log once per run."""

    def __init__(self, config: Config, log: Callable[[str], None] = print) -> None:
        self._config = config
        self._log = log
        self._memory: dict[tuple[int, int], MemoryBackend] = {}
        self._sqlite: dict[tuple[int, int], Path] = {}

    def memory(self, total: int, target_events: int) -> MemoryBackend:
        """A memory backend holding the log (the same object every call: do not append)."""
        key = (total, target_events)
        if key not in self._memory:
            backend = MemoryBackend()
            self._build(backend, total, target_events, "memory")
            self._memory[key] = backend
        return self._memory[key]

    def sqlite(self, total: int, target_events: int) -> Path:
        """The path of a sqlite file holding the log (open it; do not append to it)."""
        key = (total, target_events)
        if key not in self._sqlite:
            path = self._config.path(f"log-{total}-{target_events}.db")
            self._build(adapters.sqlite_backend(path, "normal"), total, target_events, "sqlite")
            self._sqlite[key] = path
        return self._sqlite[key]

    def _build(self, backend: Backend, total: int, target_events: int, kind: str) -> None:
        started = time.perf_counter()
        with EventStore(backend, projections=[]) as store:
            fill(store, total, target_events)
        self._log(
            f"  (built a {total:,}-event {kind} log in {time.perf_counter() - started:.1f} s)"
        )
