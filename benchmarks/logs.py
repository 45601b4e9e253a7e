"""Big logs, built once per run and shared by the cases that read them.

Logs are built with ``append_batch`` and, on sqlite, with ``durability="normal"``: building is
setup, not a measured figure. A plain log is built through a store without inline projections
(the events are legal transitions by construction; the workload is validated by the append
figures), and is byte for byte what a validating store would have written. A *snapshotted*
log is built the way a node builds one: through a store with the default projections, which
takes one snapshot at the end of the build (the log then holds one more event, its
``snapshot-created``), so reopening it loads the snapshot instead of folding the log.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import adapters, workload
from benchmarks.config import Config
from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend

__all__ = ["BUILD_CHUNK", "TARGET", "LogCache"]

#: The entity the reconstruction figures read.
TARGET = workload.channel_id(7 * 10**9)
BUILD_CHUNK = 5_000


def fill(store: EventStore, total: int, target_events: int, chunk_size: int = BUILD_CHUNK) -> None:
    """Append a :func:`~benchmarks.workload.log_events` log to ``store`` in batches of
    ``chunk_size`` (the store's snapshot policy is asked after each batch, so a store that
    snapshots every n events gets one every n events only with batches of at most n)."""
    events = workload.log_events(total, TARGET, target_events)
    while chunk := list(itertools.islice(events, chunk_size)):
        store.append_batch(chunk)


class LogCache:
    """Builds each (backend kind, size, target size) log once per run."""

    def __init__(self, config: Config, log: Callable[[str], None] = print) -> None:
        self._config = config
        self._log = log
        self._memory: dict[tuple[int, int], MemoryBackend] = {}
        self._sqlite: dict[tuple[int, int, bool], Path] = {}

    def memory(self, total: int, target_events: int) -> MemoryBackend:
        """A memory backend holding the log (the same object every call: do not append)."""
        key = (total, target_events)
        if key not in self._memory:
            backend = MemoryBackend()
            self._build(backend, total, target_events, "memory")
            self._memory[key] = backend
        return self._memory[key]

    def sqlite(self, total: int, target_events: int, *, snapshot: bool = False) -> Path:
        """The path of a sqlite file holding the log (open it; do not append to it); with
        ``snapshot``, the log ends with a snapshot of the default projections (and its
        ``snapshot-created`` event: ``total + 1`` events)."""
        key = (total, target_events, snapshot)
        if key not in self._sqlite:
            suffix = "-snapshot" if snapshot else ""
            path = self._config.path(f"log-{total}-{target_events}{suffix}.db")
            backend = adapters.sqlite_backend(path, "normal")
            self._build(backend, total, target_events, "sqlite", snapshot=snapshot)
            self._sqlite[key] = path
        return self._sqlite[key]

    def _build(
        self,
        backend: Backend,
        total: int,
        target_events: int,
        kind: str,
        *,
        snapshot: bool = False,
    ) -> None:
        started = time.perf_counter()
        with EventStore(backend, projections=None if snapshot else []) as store:
            fill(store, total, target_events)
            if snapshot:
                store.snapshot()
        what = "snapshotted " if snapshot else ""
        self._log(
            f"  (built a {total:,}-event {what}{kind} log in {time.perf_counter() - started:.1f} s)"
        )
