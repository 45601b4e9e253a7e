"""Schema version 3 of the sqlite file (ADR 0027): the durable consumers' tables, version 2
files upgraded in place, version 2 files read as they are by read-only handles, and consumer
writes serialised with every other writer of the file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chanlog.backends import sqlite_format, sqlite_schema
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import SCHEMA_VERSION, TABLES, upgrade
from chanlog.errors import LeaseHeld, NotFound, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, PositionMove, StoredRecord, StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from old_formats import make_v2_file
from sqlite_edits import (
    assert_refused_untouched,
    edit_database,
    scalar,
    table_names,
    upgrade_at_once,
)

CHILD = Path(__file__).with_name("sqlite_child.py")
V2_TABLES = {"chanlog_meta", "events", "streams", "snapshots"}
SNAPSHOT = StoredSnapshot(40, {"objective": 1}, b"state", b"\x07" * 32)


@pytest.fixture
def records() -> list[StoredRecord]:
    return stored_records(sample_events(45, objectives=3), Head(0, GENESIS_CHAIN_HASH))


@pytest.fixture
def v2_file(tmp_path: Path, records: list[StoredRecord]) -> Path:
    path = tmp_path / "old.db"
    make_v2_file(path, records, SNAPSHOT)
    assert scalar(path, "PRAGMA user_version") == 2
    assert table_names(path) == V2_TABLES
    return path


def _log_of(backend: SqliteBackend) -> tuple[object, ...]:
    """Everything a reader sees of the records and snapshots."""
    stream = sample_events(1, objectives=3)[0].objective_id.lower()
    return (
        backend.head(),
        list(backend.read(0, 100)),
        list(backend.read_stream(stream)),
        backend.stream_version(stream),
        list(backend.stream_index()),
        backend.latest_snapshot(),
    )


# -- upgrading version 2 files ---------------------------------------------------------------


def test_a_v2_log_is_upgraded_to_v3_in_place_with_its_data(
    v2_file: Path, records: list[StoredRecord]
) -> None:
    reader = SqliteBackend(v2_file, read_only=True)  # reads version 2 as it is
    before = _log_of(reader)
    reader.close()
    assert before[1] == records
    backend = SqliteBackend(v2_file)
    try:
        assert scalar(v2_file, "PRAGMA user_version") == SCHEMA_VERSION == 3
        assert table_names(v2_file) == set(TABLES) == V2_TABLES | {"consumers", "parked_records"}
        meta = "SELECT value FROM chanlog_meta WHERE key = 'schema_version'"
        assert scalar(v2_file, meta) == "3"
        assert scalar(v2_file, "SELECT value FROM chanlog_meta WHERE key = 'stream_index_block'")
        assert _log_of(backend) == before
        assert backend.consumer_states() == []
        backend.ensure_consumer("audit", 0, ["chanlog.>"])
        backend.acquire_lease("audit", "h1", 60)
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(3, start=45), transaction.head))
            transaction.move_consumer(PositionMove("audit", "h1", 48, handled=48))
    finally:
        backend.close()
    with EventStore(SqliteBackend(v2_file), projections=[]) as store:
        opened = store.backend
        assert isinstance(opened, SqliteBackend)
        state = opened.consumer_state("audit")
        assert state is not None and (state.position, state.handled) == (48, 48)
        assert upgrade(opened._connections.writer, v2_file) is False  # nothing left to do
        assert len(store) == 48


def test_the_v2_upgrade_rewrites_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    make_v2_file(path, stored_records(sample_events(2_000), Head(0, GENESIS_CHAIN_HASH)), SNAPSHOT)
    pages = path.stat().st_size // 4096
    backend = SqliteBackend(path)
    try:
        written = Path(f"{path}-wal").stat().st_size // 4096
        assert pages > 300
        assert written < 10  # the schema, two empty tables and the meta row
    finally:
        backend.close()


def test_a_failed_v2_upgrade_leaves_the_file_as_it_was(
    v2_file: Path, records: list[StoredRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    first_step = sqlite_format.UPGRADE_FROM_V2[0]  # patched below where the upgrade reads it
    monkeypatch.setattr(
        sqlite_schema, "UPGRADE_FROM_V2", (first_step, "SELECT nonsense FROM nowhere")
    )
    with pytest.raises(StorageError, match="cannot upgrade the database to schema version 3"):
        SqliteBackend(v2_file)
    assert scalar(v2_file, "PRAGMA user_version") == 2
    assert table_names(v2_file) == V2_TABLES  # the first table was rolled back too
    monkeypatch.undo()
    backend = SqliteBackend(v2_file)
    try:
        assert list(backend.read(0, 100)) == records
        assert backend.consumer_states() == []
    finally:
        backend.close()


def test_concurrent_openers_upgrade_a_v2_file_once(v2_file: Path) -> None:
    assert upgrade_at_once(v2_file, 4) == [False, False, False, True]
    assert table_names(v2_file) == set(TABLES)


# -- read-only handles on version 2 files ----------------------------------------------------


def test_a_v2_file_read_only_keeps_no_consumers_and_stays_version_2(
    v2_file: Path, records: list[StoredRecord]
) -> None:
    reader = SqliteBackend(v2_file, read_only=True)
    try:
        assert list(reader.read(0, 100)) == records
        assert reader.latest_snapshot() == SNAPSHOT
        assert reader.consumer_state("audit") is None
        assert reader.consumer_states() == []
        with pytest.raises(NotFound, match="audit"):
            reader.parked_records("audit")
        with pytest.raises(StorageError, match="read-only"):
            reader.ensure_consumer("audit", 0, ["chanlog.>"])
        with pytest.raises(StorageError, match="read-only"):
            reader.delete_consumer("audit")
        assert scalar(v2_file, "PRAGMA user_version") == 2
        assert table_names(v2_file) == V2_TABLES
        # A writer upgrades the file meanwhile: the reader finds the tables it made.
        writer = SqliteBackend(v2_file)
        try:
            writer.ensure_consumer("audit", 7, ["chanlog.>"])
            assert reader.consumer_state("audit") == writer.consumer_state("audit")
            assert reader.parked_records("audit") == []
        finally:
            writer.close()
    finally:
        reader.close()


@pytest.mark.parametrize("read_only", [False, True], ids=["writer", "read-only"])
def test_a_file_of_a_newer_version_is_refused(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "new.db"
    SqliteBackend(path).close()
    edit_database(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    match = f"schema version {SCHEMA_VERSION + 1}; this chanlog reads up to {SCHEMA_VERSION}"
    if read_only:
        with pytest.raises(StorageError, match=match):
            SqliteBackend(path, read_only=True)
    else:
        assert_refused_untouched(path, match)
    assert scalar(path, "PRAGMA user_version") == SCHEMA_VERSION + 1


# -- consumer writes share the file's writer lock ----------------------------------------------


@pytest.fixture
def backend(tmp_path: Path) -> SqliteBackend:
    return SqliteBackend(tmp_path / "log.db", durability="normal", timeout=0.2)


def test_a_consumer_write_is_one_begin_immediate_transaction(backend: SqliteBackend) -> None:
    backend.ensure_consumer("audit", 0, ["chanlog.>"])
    statements: list[str] = []
    writer = backend._connections.writer
    writer.set_trace_callback(statements.append)
    try:
        backend.acquire_lease("audit", "h1", 60)
    finally:
        writer.set_trace_callback(None)
    assert [" ".join(sql.split(" ")[:2]) for sql in statements] == [
        "BEGIN IMMEDIATE",
        "SELECT c.name,",
        "UPDATE consumers",
        "COMMIT",
    ]
    backend.close()


def test_a_consumer_write_waits_for_another_writer_of_the_file(backend: SqliteBackend) -> None:
    backend.ensure_consumer("audit", 0, ["chanlog.>"])
    other = sqlite3.connect(backend.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's writer lock, as SQLite sees it
        with pytest.raises(StorageError, match="stayed locked"):
            backend.acquire_lease("audit", "h1", 60)
        other.execute("COMMIT")
    finally:
        other.close()
    assert backend.acquire_lease("audit", "h1", 60).lease_holder == "h1"
    backend.close()


def test_a_consumer_write_inside_a_write_transaction_is_part_of_it(
    backend: SqliteBackend,
) -> None:
    backend.ensure_consumer("audit", 0, ["chanlog.>"])

    def abort() -> None:
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(1), transaction.head))
            backend.acquire_lease("audit", "h1", 60)  # joins the transaction (same thread)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        abort()
    state = backend.consumer_state("audit")
    assert state is not None and state.lease_holder is None
    assert backend.head().length == 0
    backend.close()


def test_a_damaged_consumer_row_is_a_storage_error(backend: SqliteBackend) -> None:
    backend.ensure_consumer("audit", 0, ["chanlog.>"])
    edit_database(backend.path, "UPDATE consumers SET subjects = '[not json'")
    with pytest.raises(StorageError, match="damaged consumer row 'audit'"):
        backend.consumer_state("audit")
    with pytest.raises(StorageError, match="damaged consumer row 'audit'"):
        backend.acquire_lease("audit", "h1", 60)
    backend.close()


def test_processes_sharing_a_file_never_hold_one_lease_together(tmp_path: Path) -> None:
    # Each child moves the consumer one record from the position its lease returned: were
    # two children ever to hold the lease at once, one move would be lost and the count of
    # moves would exceed the position.
    path = tmp_path / "shared.db"
    backend = SqliteBackend(path)
    backend.ensure_consumer("race", 0, ["chanlog.>"])
    backend.close()
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "lease", str(path), holder, "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for holder in ("a", "b", "c")
    ]
    moves = 0
    for child in children:
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr
        moves += json.loads(stdout)
    backend = SqliteBackend(path)
    try:
        state = backend.consumer_state("race")
        assert state is not None
        assert moves > 0
        assert (state.position, state.handled, state.lease_holder) == (moves, moves, None)
        backend.acquire_lease("race", "x", 60)
        with pytest.raises(LeaseHeld):
            backend.acquire_lease("race", "y", 60)
    finally:
        backend.close()
