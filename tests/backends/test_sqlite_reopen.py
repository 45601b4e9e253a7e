"""A large sqlite log reopens from its latest snapshot, replaying only the tail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.records import StoredRecord
from chanlog.snapshots import EveryNEvents
from chanlog.store import EventStore

SNAPSHOT_EVERY = 10_000


class _CountingSqliteBackend(SqliteBackend):
    """Counts the records read through :meth:`read` (what the store folds on opening)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records_read = 0

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        for record in super().read(start, end):
            self.records_read += 1
            yield record


def _states(store: EventStore) -> dict[str, Any]:
    return {name: projection.dump() for name, projection in store.projections.items()}


@pytest.mark.slow
def test_a_100k_event_log_reopens_from_its_snapshot(tmp_path: Path) -> None:
    from chanlog.workload import generate  # collecting this module must not need it

    path = tmp_path / "large.db"
    workload = generate(seed=4, channels=140, turns=250, messages=1)
    appended = 0
    with EventStore(
        SqliteBackend(path, durability="normal"),
        snapshot_policy=EveryNEvents(n=SNAPSHOT_EVERY),
    ) as store:
        for batch in workload.batches(2_000):
            store.append_batch(batch)
            appended += len(batch)
        assert appended >= 100_000
        length = len(store)
        before = _states(store)
        latest = store.backend.latest_snapshot()
        assert latest is not None
        assert length - SNAPSHOT_EVERY <= latest.offset < length

    backend = _CountingSqliteBackend(path)
    with EventStore(backend, snapshot_policy="never") as reopened:
        # The tail, and once more its first record: the snapshot's announcement (ADR 0067).
        assert backend.records_read == length - latest.offset + 1
        assert backend.records_read <= SNAPSHOT_EVERY + 1
        assert len(reopened) == length
        assert _states(reopened) == before
        assert len(reopened.projection("channel")) == 140
        assert len(reopened.projection("objective")) > 140
