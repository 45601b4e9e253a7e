"""Stored snapshots the log does not announce, on memory and SQLite
(:mod:`snapshots.unannounced_rows`; PostgreSQL's run is in plugins/chanlog-postgres/tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.snapshots.codec import encode_snapshot
from chanlog.workload import Workload
from core.lost_records import restore
from snapshots.unannounced_rows import (
    a_row_from_another_log_is_not_used,
    a_stray_row_at_the_head_is_not_announced,
    assert_folds_from_nothing,
)


@pytest.fixture(params=["memory", "sqlite"])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    if request.param == "memory":
        backend = MemoryBackend()
        return lambda: backend
    return lambda: SqliteBackend(tmp_path / "log.db")


def test_a_row_from_another_log_is_not_used(open_backend: Callable[[], Backend]) -> None:
    a_row_from_another_log_is_not_used(open_backend)


def test_a_stray_row_at_the_head_is_not_announced(open_backend: Callable[[], Backend]) -> None:
    a_stray_row_at_the_head_is_not_announced(open_backend)


def test_a_snapshot_past_a_cut_tail_is_not_used_once_the_log_grows_past_it() -> None:
    """A log that lost its tail but not the snapshot past the cut (ADR 0024), then took other
    records in place of the lost ones (ADR 0047): the snapshot holds the lost history."""
    events = Workload(seed=3, channels=3, turns=4, messages=0).events()
    others = Workload(seed=9, channels=3, turns=4, messages=0).events()
    whole = MemoryBackend()
    with EventStore(whole) as store:
        store.append_batch(events[:40])
        past_the_cut = store.snapshot()
    cut = MemoryBackend()
    with cut.write() as transaction:
        transaction.append(list(whole.read(0, 30)))
        transaction.save_snapshot(past_the_cut)
    with EventStore(cut) as store:
        store.append_batch(others[:20])
        assert len(store) > past_the_cut.offset
        assert_folds_from_nothing(store)


def test_a_running_store_forgets_what_a_lost_tail_announced() -> None:
    """The same, under a store that read the snapshot before the log lost its tail (a backup
    restored under a running node, ADR 0043): what it knew announced, it must find again."""
    events = Workload(seed=3, channels=3, turns=4, messages=0).events()
    others = Workload(seed=9, channels=3, turns=4, messages=0).events()
    backend = MemoryBackend()
    with EventStore(backend, checkpoint_every=0) as store:
        store.append_batch(events[:40])
        past_the_cut = store.snapshot()
        assert_folds_from_nothing(store)  # the snapshot read, its states cached
        cut = MemoryBackend()
        with cut.write() as transaction:
            transaction.append(list(backend.read(0, 30)))
            transaction.save_snapshot(past_the_cut)
        restore(backend, cut)
        store.append_batch(others[:20])
        assert len(store) > past_the_cut.offset
        assert_folds_from_nothing(store)


def test_a_row_read_before_its_announcement_is_committed_is_used_once_it_is() -> None:
    """A backend whose transactions cannot hold snapshots has the store save the row just
    before it writes the records (ADR 0036): a reader may meet the row while the log ends at
    its offset. Refused then, it is used once its announcement, the record at its offset,
    is in the log."""
    events = Workload(seed=3, channels=3, turns=4, messages=0).events()
    backend = MemoryBackend()
    with (
        EventStore(backend, snapshot_policy="never") as writer,
        EventStore(backend, projections=["channel"]) as reader,
    ):
        writer.append_batch(events[:30])
        row = encode_snapshot(30, writer.projections)
        backend.save_snapshot(row)  # saved; its announcement not written yet
        assert reader.snapshots.latest_snapshot() is None
        assert writer.snapshot() == row  # writes the announcement at offset 30
        assert reader.snapshots.latest_snapshot() == row
