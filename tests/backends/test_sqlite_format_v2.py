"""Schema version 2 of the sqlite file (ADR 0018): the head read from the last record, the
streams index written a block at a time, and version 1 files upgraded in place."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog.backends import sqlite_format, sqlite_queries, sqlite_schema
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import SCHEMA_VERSION, TABLES, upgrade
from chanlog.errors import IntegrityError, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.records import Head, StoredRecord, StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from old_formats import make_v1_file
from sqlite_edits import (
    assert_refused_untouched,
    edit_database,
    scalar,
    table_names,
    upgrade_at_once,
)

# -- building logs -----------------------------------------------------------------------------


def records_with_streams(
    streams_of: Sequence[tuple[str, ...]], after: Sequence[StoredRecord] = ()
) -> list[StoredRecord]:
    """Records continuing ``after`` whose streams are ``streams_of``. The backend stores
    whatever it is given, so payloads need not be events."""
    records: list[StoredRecord] = []
    offset = len(after)
    chain = after[-1].chain_hash if after else GENESIS_CHAIN_HASH
    for streams in streams_of:
        event_id = b"id" + offset.to_bytes(30, "big")
        chain = chain_next(chain, event_id)
        payload = orjson.dumps({"n": offset})
        records.append(StoredRecord(offset, event_id, "test-event", streams, payload, chain))
        offset += 1
    return records


@contextmanager
def block_of_new_files(block: int) -> Iterator[None]:
    """New files get ``stream_index_block = block`` while inside."""
    with mock.patch.object(sqlite_schema, "STREAM_INDEX_BLOCK", block):
        yield


def _index_rows(path: Path) -> set[tuple[str, int]]:
    connection = sqlite3.connect(path)
    try:
        return set(connection.execute("SELECT stream, position FROM streams").fetchall())
    finally:
        connection.close()


# -- a model of what the backend must answer ---------------------------------------------------

NAMES = ("a", "b", "c", "0x" + "d" * 64)
STREAMS = st.lists(st.sampled_from(NAMES), max_size=3).map(tuple)  # empty and repeated too


def assert_matches_model(backend: SqliteBackend, model: Sequence[StoredRecord]) -> None:
    """Everything a reader can ask the backend agrees with the records committed so far."""
    assert backend.head() == Head(len(model), model[-1].chain_hash if model else GENESIS_CHAIN_HASH)
    assert list(backend.read(0, len(model) + 5)) == list(model)
    length = len(model)
    for name in (*NAMES, "unused"):
        expected = [record for record in model if name in record.streams]
        assert list(backend.read_stream(name)) == expected, name
        assert backend.stream_version(name) == len(expected)
        for start, end in ((1, length - 1), (length // 2, None), (length // 3, length // 2)):
            assert list(backend.read_stream(name, start, end)) == [
                record
                for record in expected
                if record.offset >= start and (end is None or record.offset < end)
            ]


def assert_index_covers_whole_blocks(backend: SqliteBackend, model: Sequence[StoredRecord]) -> None:
    """The streams index holds exactly the streams of the positions below the last whole
    block (rows of a version 1 prefix may be there beyond it)."""
    indexed = len(model) - len(model) % backend._block
    expected = {(stream, record.offset) for record in model[:indexed] for stream in record.streams}
    rows = _index_rows(backend.path)
    assert {row for row in rows if row[1] < indexed} == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    block=st.sampled_from([1, 2, 3, 5, 8]),
    v1_prefix=st.lists(STREAMS, max_size=12),
    writes=st.lists(
        st.tuples(st.lists(STREAMS, min_size=1, max_size=12), st.integers(0, 12)),
        min_size=1,
        max_size=8,
    ),
)
def test_reads_and_counts_agree_with_a_model(
    block: int, v1_prefix: list[tuple[str, ...]], writes: list[tuple[list[tuple[str, ...]], int]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "log.db"
        model: list[StoredRecord] = records_with_streams(v1_prefix)
        if model:
            make_v1_file(path, model)
        with block_of_new_files(block):
            backend = SqliteBackend(path, durability="normal")
        try:
            assert_matches_model(backend, model)
            for streams_of, split in writes:
                records = records_with_streams(streams_of, model)
                with backend.write() as transaction:
                    assert transaction.head == backend.head()
                    transaction.append(records[:split])
                    transaction.append(records[split:])
                    staged = model + records
                    for name in NAMES:
                        assert transaction.stream_version(name) == sum(
                            name in record.streams for record in staged
                        )
                model = staged
                assert_matches_model(backend, model)
                assert_index_covers_whole_blocks(backend, model)
        finally:
            backend.close()


# -- the write path ----------------------------------------------------------------------------


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SqliteBackend]:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal")
    yield backend
    backend.close()


def _traced_append(backend: SqliteBackend, records: Sequence[StoredRecord]) -> list[str]:
    statements: list[str] = []
    backend._connections.writer.set_trace_callback(statements.append)
    try:
        with backend.write() as transaction:
            transaction.find(records[0].event_id)
            transaction.append(records)
    finally:
        backend._connections.writer.set_trace_callback(None)
    return [" ".join(sql.split(" ")[:2]) for sql in statements]


def test_a_commit_inside_a_block_writes_the_event_row_only(backend: SqliteBackend) -> None:
    # What makes one event per commit cheap: no head row, no index row, five statements.
    records = records_with_streams([("a",), ("b", "c")])
    for record in records:
        assert _traced_append(backend, [record]) == [
            "BEGIN IMMEDIATE",
            "SELECT position,",
            "SELECT position",
            "INSERT INTO",
            "COMMIT",
        ]
    assert _index_rows(backend.path) == set()
    assert table_names(backend.path) == set(TABLES)


def test_the_commit_that_completes_a_block_indexes_all_of_it(backend: SqliteBackend) -> None:
    assert backend._block == 32
    model = records_with_streams([("a",)] * 20 + [("b", "a", "b")] + [()] * 10)
    with backend.write() as transaction:
        transaction.append(model)
    assert _index_rows(backend.path) == set()
    last = records_with_streams([("c",)], model)
    statements = _traced_append(backend, last)
    assert "INSERT OR" in statements  # the block's streams, entered together
    model += last
    assert _index_rows(backend.path) == {("a", p) for p in range(21)} | {("b", 20), ("c", 31)}
    assert_matches_model(backend, model)


def test_a_file_keeps_the_block_it_was_created_with(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with block_of_new_files(4):
        backend = SqliteBackend(path)
    model = records_with_streams([("a",)] * 10)
    with backend.write() as transaction:
        transaction.append(model)
    backend.close()
    reopened = SqliteBackend(path)
    try:
        assert reopened._block == 4
        assert_index_covers_whole_blocks(reopened, model)
        assert_matches_model(reopened, model)
    finally:
        reopened.close()


def test_damaged_streams_of_a_row_to_index_are_an_integrity_error(backend: SqliteBackend) -> None:
    model = records_with_streams([("a", "b")] * 31)
    with backend.write() as transaction:
        transaction.append(model)
    edit_database(Path(backend.path), "UPDATE events SET streams = '[not json' WHERE position = 7")
    with (
        pytest.raises(IntegrityError, match="offset 7: damaged record: its streams do not parse"),
        backend.write() as transaction,
    ):
        transaction.append(records_with_streams([("a",)], model))
    assert backend.head().length == 31


def test_a_commit_does_not_wake_waiters(tmp_path: Path) -> None:
    # The store announces its own appends; waking its watcher on every commit cost a thread
    # switch and three reads per append. Waiters poll instead.
    backend = SqliteBackend(tmp_path / "log.db", durability="normal", poll_interval=0.4)
    polls: list[int] = []
    real_head = backend.head

    def counting_head() -> Head:
        polls.append(1)
        return real_head()

    backend.head = counting_head  # type: ignore[method-assign]
    waiter = threading.Thread(target=backend.wait, args=(10_000, 1.0))
    waiter.start()
    model: list[StoredRecord] = []
    for _ in range(40):
        records = records_with_streams([("a",)], model)
        with backend.write() as transaction:
            transaction.append(records)
        model += records
    waiter.join()
    backend.close()
    assert len(polls) <= 5  # about 1.0 / 0.4 polls, not one per commit


def test_close_wakes_a_waiter_at_once(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal", poll_interval=60)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            backend.wait(0, 60)
        except StorageError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    backend.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert "closed" in str(outcome[0])


# -- upgrading version 1 files -----------------------------------------------------------------


def test_a_v1_log_is_upgraded_in_place_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = stored_records(sample_events(45), Head(0, GENESIS_CHAIN_HASH))
    snapshot = StoredSnapshot(40, {"objective": 1}, b"state", b"\x07" * 32)
    make_v1_file(path, old, [snapshot])
    assert scalar(path, "PRAGMA user_version") == 1

    with EventStore(SqliteBackend(path), projections=[]) as store:
        backend = store.backend
        assert isinstance(backend, SqliteBackend)
        assert scalar(path, "PRAGMA user_version") == SCHEMA_VERSION
        assert table_names(path) == set(TABLES)
        meta = "SELECT value FROM chanlog_meta WHERE key = 'schema_version'"
        assert scalar(path, meta) == str(SCHEMA_VERSION)  # through version 2 (ADR 0027)
        assert backend._block == 32
        assert backend.latest_snapshot() == snapshot
        assert_matches_model(backend, old)
        # The records verify; the raw snapshot no snapshot-created event announces is
        # reported as what it would be in a real log, the trace of a cut tail (ADR 0024).
        with pytest.raises(IntegrityError, match=r"offset 40: .*no snapshot-created"):
            store.verify()
        # Appending goes on: the block 32-63 holds rows of both versions.
        store.append_batch(sample_events(30, start=45))
        model = stored_records(sample_events(75), Head(0, GENESIS_CHAIN_HASH))
        assert_matches_model(backend, model)
        assert_index_covers_whole_blocks(backend, model)
        with pytest.raises(IntegrityError, match=r"offset 40: .*no snapshot-created"):
            store.verify()
    reopened = SqliteBackend(path)  # a second open finds the current version: nothing to do
    try:
        assert upgrade(reopened._connections.writer, path) is False
        assert_matches_model(reopened, model)
    finally:
        reopened.close()


def test_the_upgrade_rewrites_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path, stored_records(sample_events(2_000), Head(0, GENESIS_CHAIN_HASH)))
    pages = path.stat().st_size // 4096
    backend = SqliteBackend(path)
    try:
        written = Path(f"{path}-wal").stat().st_size // 4096
        assert pages > 300
        assert written < 10  # the schema, the meta rows and the freed head page
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            "DELETE FROM events WHERE position = 44",
            r"head row says 45 records, the events end at offset 44\).*will not upgrade",
        ),
        ("UPDATE head SET chain_hash = zeroblob(32)", "chain hash is not the last record's"),
        ("UPDATE head SET length = 0", "head row says 0 records"),
    ],
)
def test_a_damaged_v1_log_is_refused_not_upgraded(tmp_path: Path, edit: str, match: str) -> None:
    # Once the head row is gone, nothing in the file would show records cut off the end.
    path = tmp_path / "old.db"
    make_v1_file(path, stored_records(sample_events(45), Head(0, GENESIS_CHAIN_HASH)))
    edit_database(path, edit)
    assert_refused_untouched(path, match)
    assert scalar(path, "PRAGMA user_version") == 1
    assert "head" in table_names(path)


def test_a_failed_upgrade_leaves_the_v1_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    old = stored_records(sample_events(12), Head(0, GENESIS_CHAIN_HASH))
    make_v1_file(path, old)
    first_step = sqlite_format.UPGRADE_FROM_V1[0]  # patched below where the upgrade reads it
    monkeypatch.setattr(
        sqlite_schema, "UPGRADE_FROM_V1", (first_step, "SELECT nonsense FROM nowhere")
    )
    with pytest.raises(StorageError, match="cannot upgrade the database to schema version"):
        SqliteBackend(path)
    assert scalar(path, "PRAGMA user_version") == 1
    assert "head" in table_names(path)
    with pytest.raises(sqlite3.OperationalError, match="no such column"):
        scalar(path, "SELECT stream FROM events")  # the first step was rolled back too
    monkeypatch.undo()
    backend = SqliteBackend(path)
    try:
        assert_matches_model(backend, old)
    finally:
        backend.close()


def test_a_v1_file_is_refused_read_only_and_left_as_it_was(tmp_path: Path) -> None:
    # Reading a version 1 file needs the upgrade, and a read-only handle never writes.
    path = tmp_path / "old.db"
    old = stored_records(sample_events(6), Head(0, GENESIS_CHAIN_HASH))
    make_v1_file(path, old)
    with pytest.raises(StorageError, match="schema version 1") as error:
        SqliteBackend(path, read_only=True)
    assert "open it once without read_only" in str(error.value)
    assert scalar(path, "PRAGMA user_version") == 1
    assert "head" in table_names(path)
    SqliteBackend(path).close()  # a writer upgrades it; then read-only opens
    reader = SqliteBackend(path, read_only=True)
    try:
        assert_matches_model(reader, old)
    finally:
        reader.close()


def test_concurrent_openers_upgrade_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path, stored_records(sample_events(40), Head(0, GENESIS_CHAIN_HASH)))
    assert upgrade_at_once(path, 5) == [False] * 4 + [True]
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == 40


def test_a_v1_file_without_its_head_table_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path, stored_records(sample_events(5), Head(0, GENESIS_CHAIN_HASH)))
    edit_database(path, "DROP TABLE head")
    assert_refused_untouched(path, "missing tables: head")


def test_upgrade_itself_refuses_a_v1_file_without_a_head_row(tmp_path: Path) -> None:
    # Opening checks the head row first; upgrade() checks again inside its own lock.
    path = tmp_path / "old.db"
    make_v1_file(path, stored_records(sample_events(3), Head(0, GENESIS_CHAIN_HASH)))
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("DELETE FROM head")
        with pytest.raises(StorageError, match=r"\(no head row\)"):
            upgrade(connection, path)
        assert not connection.in_transaction
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        connection.close()


def test_a_failed_head_read_releases_the_writer(
    backend: SqliteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_queries, "SELECT_LAST", "SELECT nonsense FROM nowhere")
    with pytest.raises(StorageError, match="cannot read the head"), backend.write():
        pass
    monkeypatch.undo()
    assert not backend._connections.writer.in_transaction
    with backend.write() as transaction:  # neither the lock nor a transaction was left
        transaction.append(records_with_streams([("a",)]))
    assert backend.head().length == 1
