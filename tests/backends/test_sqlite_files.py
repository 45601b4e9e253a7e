"""The sqlite backend's file handling: creation, options, and refusing files it must not touch."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import attrs
import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION, create_database
from chanlog.errors import ConfigError, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.plugins.host import PluginHost
from chanlog.records import Head
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from sqlite_edits import assert_refused_untouched, edit_database


def _make_log(path: Path, events: int = 300) -> None:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(events))


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    _make_log(path)
    return path


def test_a_new_file_is_stamped_with_the_format_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteBackend(path).close()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()
    assert sorted(os.listdir(tmp_path)) == ["new.db"]  # no temporary file left behind


def test_durability_sets_synchronous(tmp_path: Path) -> None:
    full = SqliteBackend(tmp_path / "a.db")
    normal = SqliteBackend(tmp_path / "b.db", durability="normal")
    try:
        # 2 = FULL, 1 = NORMAL
        assert full._connections.writer.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert normal._connections.writer.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        full.close()
        normal.close()


def test_the_backend_is_registered_as_sqlite(tmp_path: Path) -> None:
    factory = PluginHost(load_entry_points=False).lookup("backends", "sqlite")
    backend = factory(path=str(tmp_path / "x.db"), durability="normal")
    try:
        assert isinstance(backend, SqliteBackend)
        assert backend.shared is True
        assert backend.name == "sqlite"
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "backend.path"),
        ({"path": ":memory:"}, "backend.path"),
        ({"path": ""}, "backend.path"),
        ({"path": 42}, "backend.path"),
        ({"path": "x.db", "durability": "paranoid"}, "backend.durability"),
        ({"path": "x.db", "durability": 1}, "backend.durability"),
        ({"path": "x.db", "timeout": 0}, "backend.timeout"),
        ({"path": "x.db", "timeout": "soon"}, "backend.timeout"),
        ({"path": "x.db", "poll_interval": True}, "backend.poll_interval"),
        ({"path": "x.db", "pool": 3}, "backend.pool"),
    ],
)
def test_bad_options_raise_config_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, object], key: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        SqliteBackend(**options)  # type: ignore[arg-type]
    assert error.value.key == key
    assert not (tmp_path / "x.db").exists()


def test_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        SqliteBackend(tmp_path / "absent" / "log.db")


def test_a_text_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 200)
    assert_refused_untouched(path, "not a chanlog database")


def test_random_bytes_are_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    path.write_bytes(bytes((i * 7919) % 251 for i in range(8192)))
    assert_refused_untouched(path, "not an SQLite file")


def test_an_empty_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    assert_refused_untouched(path, "empty file")


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)")
    connection.execute("INSERT INTO events (body) VALUES ('hello')")
    connection.commit()
    connection.close()
    assert_refused_untouched(path, "application_id")


@pytest.mark.parametrize("keep", [0.5, 0.9, 4096 + 100, 50, 10])
def test_a_truncated_file_is_refused_untouched(log_file: Path, keep: float) -> None:
    data = log_file.read_bytes()
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    log_file.write_bytes(data[:cut])
    assert_refused_untouched(log_file, "truncated")


def test_a_newer_schema_version_is_refused_untouched(log_file: Path) -> None:
    edit_database(log_file, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert_refused_untouched(log_file, "newer chanlog")


def test_a_newer_schema_version_still_in_the_wal_is_refused_untouched(log_file: Path) -> None:
    # A newer chanlog that crashed right after migrating: the version is only in the WAL.
    holder = sqlite3.connect(log_file, isolation_level=None)
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    try:
        before = log_file.read_bytes()
        with pytest.raises(StorageError, match="newer chanlog"):
            SqliteBackend(log_file)
        assert log_file.read_bytes() == before
    finally:
        holder.close()


def test_a_chanlog_file_with_a_missing_table_is_refused(log_file: Path) -> None:
    edit_database(log_file, "DROP TABLE snapshots")
    assert_refused_untouched(log_file, "missing tables: snapshots")


def test_a_zero_schema_version_is_refused(log_file: Path) -> None:
    edit_database(log_file, "PRAGMA user_version = 0")
    assert_refused_untouched(log_file, "schema version 0")


def test_concurrent_creation_makes_one_database(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    outcomes: list[bool] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        outcomes.append(create_database(path))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 5 + [True]
    assert sorted(os.listdir(tmp_path)) == ["race.db"]
    SqliteBackend(path).close()


def test_a_closed_backend_refuses_work(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    backend.close()
    assert backend.closed
    with pytest.raises(StorageError, match="closed"):
        backend.head()
    with pytest.raises(StorageError, match="closed"), backend.write():
        pass
    with pytest.raises(StorageError, match="closed"):
        list(backend.read(0, 1))


def test_a_locked_database_times_out_with_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    backend = SqliteBackend(path, timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageError, match="locked"), backend.write():
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with backend.write() as transaction:  # the lock is free again
        assert transaction.head.length == 0
    backend.close()


def test_a_nested_write_on_one_thread_is_refused(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        with backend.write(), pytest.raises(StorageError, match="nested"), backend.write():
            pass
    finally:
        backend.close()


def test_records_with_a_gap_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        with backend.write() as transaction:
            records = stored_records(sample_events(3), transaction.head)
            with pytest.raises(StorageError, match="does not continue"):
                transaction.append([records[0], records[2]])
        assert backend.head().length == 0
    finally:
        backend.close()


def test_an_event_id_twice_in_one_append_is_named(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        records = stored_records(sample_events(2), Head(0, GENESIS_CHAIN_HASH))
        twice = [records[0], attrs.evolve(records[1], event_id=records[0].event_id)]

        def write_twice() -> None:
            with backend.write() as transaction:
                transaction.append(twice)

        with pytest.raises(StorageError, match=r"record 1: event id 0x\w+ is already at offset 0"):
            write_twice()
        assert backend.head().length == 0
    finally:
        backend.close()


def test_a_taken_position_is_a_storage_error_not_a_known_id(tmp_path: Path) -> None:
    # Only the event-id index means "already in the log"; any other constraint is damage.
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        records = stored_records(sample_events(1), Head(0, GENESIS_CHAIN_HASH))

        def write_over_a_taken_position() -> None:
            with backend.write() as transaction:
                backend._connections.writer.execute(
                    "INSERT INTO events (position, event_id, event_type, streams, payload,"
                    " chain_hash) VALUES (0, x'00', 't', '', x'', x'')"
                )
                transaction.append_unless_known(records)

        with pytest.raises(StorageError, match=r"UNIQUE constraint failed: events\.position"):
            write_over_a_taken_position()
        assert backend.head().length == 0
    finally:
        backend.close()


def test_a_duplicate_event_id_is_a_storage_error_and_rolls_back(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    try:
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(2), transaction.head))
        head = backend.head()
        fresh = stored_records(sample_events(1, start=5), head)
        duplicate = attrs.evolve(stored_records(sample_events(1), head)[0], offset=3)

        def write_duplicate() -> None:
            with backend.write() as transaction:
                transaction.append(fresh)
                transaction.append([duplicate])

        with pytest.raises(
            StorageError,
            match=r"record 3: event id 0x\w+ is already at offset 0 \(event ids are unique\); "
            r"none of records 3\.\.3 was appended",
        ):
            write_duplicate()
        assert backend.head() == head
        assert backend.find(fresh[0].event_id) is None
        assert [record.offset for record in backend.read(0, 10)] == [0, 1]
    finally:
        backend.close()
