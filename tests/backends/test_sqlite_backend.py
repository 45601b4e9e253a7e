"""The sqlite backend beyond the conformance suite: streaming, snapshots in transactions,
readers next to a writer, damaged rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from chanlog.backends import sqlite as sqlite_module
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_connections import MAX_IDLE_READERS
from chanlog.errors import StorageError
from chanlog.records import StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from sqlite_edits import assert_refused_untouched, edit_database


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal")
    yield backend
    backend.close()


def _fill(backend: SqliteBackend, count: int, objectives: int = 4) -> None:
    with backend.write() as transaction:
        transaction.append(
            stored_records(sample_events(count, objectives=objectives), transaction.head)
        )


def _count_queries(monkeypatch: pytest.MonkeyPatch, backend: SqliteBackend) -> list[str]:
    queries: list[str] = []
    original = backend._connections.query

    def counting(action: str, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        queries.append(action)
        return original(action, sql, parameters)

    monkeypatch.setattr(backend._connections, "query", counting)
    return queries


def test_reads_fetch_bounded_chunks_on_demand(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(backend, 1000)
    monkeypatch.setattr(sqlite_module, "READ_CHUNK", 10)
    queries = _count_queries(monkeypatch, backend)
    first = list(islice(backend.read(0, 1000), 25))
    assert [record.offset for record in first] == list(range(25))
    assert queries == ["read records"] * 3  # 30 rows fetched for 25 wanted, not 1000
    queries.clear()
    assert [record.offset for record in backend.read(995, 2000)] == list(range(995, 1000))
    assert queries == ["read records"]


def test_stream_reads_cross_chunk_boundaries(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(backend, 300, objectives=3)
    monkeypatch.setattr(sqlite_module, "READ_CHUNK", 7)
    objective = sample_events(1, objectives=3)[0].objective_id.lower()
    queries = _count_queries(monkeypatch, backend)
    offsets = [record.offset for record in backend.read_stream(objective)]
    assert offsets == list(range(0, 300, 3))
    # 96 of the 100 records lie below the last whole index block (288 = 9 * 32): 14 chunks
    # of 7 from the index; the 4 after it come from one read of the tail.
    assert backend._block == 32
    assert queries == ["read the head"] + ["read a stream"] * 15
    assert [record.offset for record in backend.read_stream(objective, 30, 60)] == list(
        range(30, 60, 3)
    )
    assert next(islice(backend.read_stream(objective, 31), 1)).offset == 33


def test_a_snapshot_saved_inside_a_write_commits_and_rolls_back_with_it(
    backend: SqliteBackend,
) -> None:
    snapshot = StoredSnapshot(0, {"objective": 1}, b"inside", b"\x01" * 32)

    def roll_back() -> None:
        with backend.write():
            backend.save_snapshot(snapshot)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        roll_back()
    assert backend.latest_snapshot() is None
    with backend.write():
        backend.save_snapshot(snapshot)
    assert backend.latest_snapshot() == snapshot


def test_readers_are_not_blocked_by_a_writer(backend: SqliteBackend) -> None:
    _fill(backend, 5)
    inside = threading.Event()
    release = threading.Event()

    def hold_the_writer_lock() -> None:
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(3, start=5), transaction.head))
            inside.set()
            release.wait(10)

    writer = threading.Thread(target=hold_the_writer_lock)
    writer.start()
    try:
        assert inside.wait(10)
        # Uncommitted records are invisible; committed ones are readable meanwhile.
        assert backend.head().length == 5
        assert [record.offset for record in backend.read(0, 100)] == list(range(5))
    finally:
        release.set()
        writer.join()
    assert backend.head().length == 8


def test_many_threads_read_at_once(backend: SqliteBackend) -> None:
    _fill(backend, 200)
    failures: list[BaseException] = []
    barrier = threading.Barrier(12)

    def read_all() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                assert [record.offset for record in backend.read(0, 200)] == list(range(200))
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=read_all) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert backend._connections.idle_readers() <= MAX_IDLE_READERS


def test_unreadable_snapshot_versions_are_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    backend = SqliteBackend(path)
    backend.save_snapshot(StoredSnapshot(3, {"objective": 1}, b"data", b"\x02" * 32))
    backend.close()
    edit_database(path, "UPDATE snapshots SET versions = '{not json' WHERE position = 3")
    backend = SqliteBackend(path)
    try:
        with pytest.raises(StorageError, match="offset 3 has unreadable versions"):
            backend.latest_snapshot()
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ("DELETE FROM chanlog_meta WHERE key = 'format'", "no format marker"),
        ("DELETE FROM chanlog_meta WHERE key = 'stream_index_block'", "stream_index_block"),
        ("UPDATE chanlog_meta SET value = '0' WHERE key = 'stream_index_block'", "positive"),
        ("UPDATE chanlog_meta SET value = 'x' WHERE key = 'stream_index_block'", "positive"),
    ],
)
def test_damaged_bookkeeping_rows_are_refused_untouched(
    tmp_path: Path, edit: str, match: str
) -> None:
    path = tmp_path / "log.db"
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(5))
    edit_database(path, edit)
    assert_refused_untouched(path, match)


def test_a_closed_backend_refuses_snapshots(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    backend.close()
    with pytest.raises(StorageError, match="closed"):
        backend.save_snapshot(StoredSnapshot(0, {}, b"", bytes(32)))
    with pytest.raises(StorageError, match="closed"):
        backend.latest_snapshot()
    assert "log.db" in repr(backend)


def test_close_waits_for_a_write_in_progress(backend: SqliteBackend) -> None:
    inside = threading.Event()

    def slow_write() -> None:
        with backend.write() as transaction:
            inside.set()
            transaction.append(stored_records(sample_events(2), transaction.head))
            threading.Event().wait(0.1)

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert inside.wait(10)
    backend.close()
    writer.join()
    reopened = SqliteBackend(backend.path)
    try:
        assert reopened.head().length == 2
    finally:
        reopened.close()
