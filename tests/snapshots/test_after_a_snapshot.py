"""What a snapshot does once it has committed, remembering the head it ends and applying the
retention, fails on its own: on a full disk the commit goes into the log's reserve (ADR
0037) while a new witness file does not fit. The caller is then told of the snapshot it got,
not of a failure (it would take another), and the retention still runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import StorageError
from chanlog.records import Head
from chanlog.snapshots import EveryNEvents
from chanlog.workload import Workload

EVENTS = Workload(seed=5, channels=3, turns=5).events()


def _disk_full(_head: Head) -> None:
    raise StorageError("node.db-head: cannot write the head witness: [Errno 28] No space left")


def test_a_witness_that_does_not_fit_leaves_the_snapshot_taken_and_pruned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SqliteBackend(tmp_path / "node.db")
    policy = EveryNEvents(n=10**6, keep=1, incremental=False)
    with EventStore(backend, snapshot_policy=policy) as store:
        store.append_batch(EVENTS[:30])
        store.snapshot()
        store.append_batch(EVENTS[30:40])
        monkeypatch.setattr(backend, "remember_head", _disk_full)
        with caplog.at_level(logging.WARNING, "chanlog.snapshots"):
            taken = store.snapshot()
        assert taken.offset == 41
        [last] = store.read_range(len(store) - 1, len(store))
        assert last.event_type == "snapshot-created"
        assert [offset for offset, _size in backend.snapshot_sizes()] == [41]  # pruned
        assert "the head after a snapshot was not remembered" in caplog.text
        assert store.verify() == len(store)


def test_a_retention_that_fails_leaves_the_snapshot_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = EveryNEvents(n=10**6, keep=1, incremental=False)
    with EventStore(SqliteBackend(tmp_path / "node.db"), snapshot_policy=policy) as store:
        store.append_batch(EVENTS[:30])
        store.snapshot()

        def full(keep: int | None = None) -> list[int]:
            raise StorageError("node.db: cannot delete snapshots: database or disk is full")

        monkeypatch.setattr(store._taker, "prune", full)
        with caplog.at_level(logging.WARNING, "chanlog.snapshots"):
            taken = store.snapshot()
        assert taken.offset == 31
        assert "snapshots were not pruned after a snapshot" in caplog.text
        monkeypatch.undo()
        assert store.prune_snapshots() == [30]  # the next prune applies the retention
