"""The sqlite write path: event ids looked up in chunks, optimistic inserts that let the unique
index find redelivered events, and the connection settings the throughput depends on."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog.backends import sqlite_queries
from chanlog.backends.sqlite import (
    FIND_CHUNK,
    WAL_AUTOCHECKPOINT_PAGES,
    WRITER_CACHE_KIB,
    SqliteBackend,
)
from chanlog.errors import StorageError
from chanlog.records import Head, StoredRecord
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records

_FIND_IN_PREFIX = "SELECT event_id, position FROM events WHERE event_id IN"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal")
    yield backend
    backend.close()


def _fill(backend: SqliteBackend, count: int, *, salt: str = "") -> list[StoredRecord]:
    with backend.write() as transaction:
        records = stored_records(sample_events(count, salt=salt), transaction.head)
        transaction.append(records)
    return records


def _unknown_ids(count: int) -> list[bytes]:
    return [record.event_id for record in stored_records(sample_events(count, salt="x"), _EMPTY)]


_EMPTY = Head(0, bytes(32))


def _trace(connection: sqlite3.Connection) -> list[str]:
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    return statements


def _row_counts(backend: SqliteBackend) -> tuple[int, int]:
    connection = sqlite3.connect(backend.path)
    try:
        events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        streams = connection.execute("SELECT count(*) FROM streams").fetchone()[0]
    finally:
        connection.close()
    return int(events), int(streams)


# -- find_many -----------------------------------------------------------------------------


def test_find_many_answers_each_id_in_order(backend: SqliteBackend) -> None:
    known = _fill(backend, 5)
    unknown = _unknown_ids(2)
    ids = [known[3].event_id, unknown[0], known[0].event_id, known[3].event_id, unknown[1]]
    expected = [3, None, 0, 3, None]
    assert backend.find_many(ids) == expected
    with backend.write() as transaction:
        assert transaction.find_many(ids) == expected
        assert transaction.find_many([]) == []
    assert backend.find_many([]) == []


@pytest.mark.parametrize("count", [1, 3, FIND_CHUNK, FIND_CHUNK + 1, 2 * FIND_CHUNK + 37])
def test_find_many_sends_one_query_per_chunk(backend: SqliteBackend, count: int) -> None:
    known = _fill(backend, count)
    ids = [record.event_id for record in reversed(known)]
    with backend.write() as transaction:
        statements = _trace(backend._connections.writer)
        found = transaction.find_many(ids)
        backend._connections.writer.set_trace_callback(None)
    assert found == list(reversed(range(count)))
    lookups = [sql for sql in statements if sql.startswith(_FIND_IN_PREFIX)]
    assert len(lookups) == math.ceil(count / FIND_CHUNK)
    assert len(statements) == len(lookups)  # nothing else: no per-id statement


def test_find_many_reuses_a_few_statement_texts(backend: SqliteBackend) -> None:
    # Chunks are padded to a handful of sizes, so SQLite's statement cache keeps them all.
    known = _fill(backend, 300)
    ids = [record.event_id for record in known]
    with backend.write() as transaction:
        statements = _trace(backend._connections.writer)
        for size in range(1, 301):
            assert transaction.find_many(ids[:size]) == list(range(size))
        backend._connections.writer.set_trace_callback(None)
    assert len(statements) == 300
    # The trace shows the bound values: count them to see the statement each query used.
    sizes = {sql.count("x'") for sql in statements}
    assert sizes == {1, 2, 4, 8, 16, 32, 64, 128, 256, FIND_CHUNK}


def test_find_many_inside_a_write_sees_its_own_appends(backend: SqliteBackend) -> None:
    with backend.write() as transaction:
        records = stored_records(sample_events(3), transaction.head)
        transaction.append(records)
        assert transaction.find_many([record.event_id for record in records]) == [0, 1, 2]
    assert backend.find_many([record.event_id for record in records]) == [0, 1, 2]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(picks=st.lists(st.integers(min_value=0, max_value=39), max_size=80))
def test_find_many_agrees_with_find(backend: SqliteBackend, picks: list[int]) -> None:
    if backend.head().length == 0:
        _fill(backend, 20)
    candidates = [record.event_id for record in stored_records(sample_events(20), _EMPTY)]
    candidates += _unknown_ids(20)
    ids = [candidates[pick] for pick in picks]
    assert backend.find_many(ids) == [backend.find(event_id) for event_id in ids]


def test_find_many_failures_are_storage_errors(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(backend, 2)
    with backend.write() as transaction:
        monkeypatch.setattr(sqlite_queries, "FIND_IN", {1: "SELECT nonsense FROM nowhere"})
        with pytest.raises(StorageError, match="cannot look up event ids"):
            transaction.find_many([b"\x01" * 32])
    with pytest.raises(StorageError, match="cannot look up event ids"):
        backend.find_many([b"\x01" * 32])
    backend.close()
    with pytest.raises(StorageError, match="closed"):
        backend.find_many([b"\x01" * 32])


def test_a_batch_of_new_events_is_written_without_looking_ids_up(
    backend: SqliteBackend,
) -> None:
    store = EventStore(backend, projections=[])
    statements = _trace(backend._connections.writer)
    offsets = store.append_batch(sample_events(1200))
    backend._connections.writer.set_trace_callback(None)
    assert offsets == list(range(1200))
    assert not [sql for sql in statements if "event_id" in sql and sql.startswith("SELECT")]
    assert not [sql for sql in statements if sql.startswith(("UPDATE", "DELETE"))]


def test_a_batch_with_a_known_event_looks_ids_up_per_chunk_not_per_event(
    backend: SqliteBackend,
) -> None:
    store = EventStore(backend, projections=[])
    events = sample_events(1200)
    store.append(events[700])
    statements = _trace(backend._connections.writer)
    offsets = store.append_batch(events)
    backend._connections.writer.set_trace_callback(None)
    assert offsets == [*range(1, 701), 0, *range(701, 1200)]
    lookups = [sql for sql in statements if "event_id" in sql and sql.startswith("SELECT")]
    assert len(lookups) == math.ceil(1200 / FIND_CHUNK)
    # The optimistic insert went in up to the known id and was taken out again.
    assert [sql for sql in statements if sql.startswith("DELETE")] == [
        "DELETE FROM events WHERE position >= 1"
    ]
    assert [record.offset for record in backend.read(0, 1300)] == list(range(1200))


# -- connection settings ---------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
def test_the_writer_connection_settings(tmp_path: Path, durability: str, synchronous: int) -> None:
    backend = SqliteBackend(tmp_path / "log.db", durability=durability)
    try:
        writer = backend._connections.writer
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert writer.execute("PRAGMA cache_size").fetchone()[0] == -WRITER_CACHE_KIB
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WAL_AUTOCHECKPOINT_PAGES
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("constant", "call", "action"),
    [
        ("FIND_ONE", lambda tx, records: tx.find(records[0].event_id), "look up an event id"),
        ("COUNT_INDEXED", lambda tx, records: tx.stream_version("s"), "count a stream"),
        ("INSERT_EVENT", lambda tx, records: tx.append(records), "append records"),
    ],
)
def test_sqlite_failures_in_a_write_are_storage_errors_and_roll_back(
    backend: SqliteBackend,
    monkeypatch: pytest.MonkeyPatch,
    constant: str,
    call: Any,
    action: str,
) -> None:
    def write_through_the_broken_statement() -> None:
        with backend.write() as transaction:
            records = stored_records(sample_events(2), transaction.head)
            call(transaction, records)
            raise AssertionError("the failing call must raise")

    monkeypatch.setattr(sqlite_queries, constant, "SELECT nonsense FROM nowhere")
    with pytest.raises(StorageError, match=f"cannot {action}: no such table: nowhere"):
        write_through_the_broken_statement()
    monkeypatch.undo()
    assert backend.head() == _EMPTY
    assert _row_counts(backend) == (0, 0)
    with backend.write() as transaction:  # the connection is usable again
        transaction.append(stored_records(sample_events(1), transaction.head))
    assert backend.head().length == 1


# -- optimistic appends agree with looked-up ones ----------------------------------------------

_POOL = sample_events(12, salt="pool")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    appends=st.lists(
        st.lists(st.integers(min_value=0, max_value=len(_POOL) - 1), min_size=1, max_size=6),
        max_size=8,
    )
)
def test_optimistic_appends_answer_like_looked_up_ones(
    tmp_path_factory: pytest.TempPathFactory, appends: list[list[int]]
) -> None:
    # The memory backend looks every id up first; sqlite lets its unique index find the
    # known ones (ADR 0022). Same appends, same offsets, same log, same notifications.
    path = tmp_path_factory.mktemp("optimistic") / "log.db"
    with (
        EventStore(projections=[]) as looked_up,
        EventStore(SqliteBackend(path, durability="normal"), projections=[]) as optimistic,
    ):
        seen: dict[str, list[int]] = {"looked_up": [], "optimistic": []}
        looked_up.subscribe(lambda record: seen["looked_up"].append(record.offset))
        optimistic.subscribe(lambda record: seen["optimistic"].append(record.offset))
        for picks in appends:
            events = [_POOL[pick] for pick in picks]
            if len(events) == 1:
                assert optimistic.append(events[0]) == looked_up.append(events[0])
            else:
                assert optimistic.append_batch(events) == looked_up.append_batch(events)
        assert [r.event_id for r in optimistic] == [r.event_id for r in looked_up]
        assert optimistic.backend.head() == looked_up.backend.head()
        assert seen["optimistic"] == seen["looked_up"]
        assert optimistic.verify() == len(looked_up)
