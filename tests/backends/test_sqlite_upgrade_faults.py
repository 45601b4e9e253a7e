"""The upgrade of an old sqlite file under faults (ADRs 0018 and 0027): a process killed at
every point of it, a write-ahead log torn inside its commit, several processes upgrading one
file at once, an older writer still appending, and files whose version or tables are wrong.
Whatever happens, the file opens afterwards, upgraded or not (never half), with every
record, and verifies; or it is refused with a clear error and left as it was."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_format import SCHEMA_VERSION, tables_of
from chanlog.errors import StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredRecord
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from held_children import first_lines_of_held_children
from old_formats import make_v1_file, make_v2_file
from sqlite_edits import assert_refused_untouched, edit_database, scalar, table_names

CHILD = Path(__file__).with_name("upgrade_child.py")
RECORDS = stored_records(sample_events(40), Head(0, GENESIS_CHAIN_HASH))
MAKERS: dict[int, Callable[[Path, list[StoredRecord]], None]] = {
    1: make_v1_file,
    2: make_v2_file,
}


def _old_file(path: Path, version: int, *, in_wal: int = 0) -> list[StoredRecord]:
    """An old file of ``version`` holding :data:`RECORDS`; its last ``in_wal`` records only
    in a write-ahead log left beside it (its writer was killed before a checkpoint)."""
    MAKERS[version](path, RECORDS[: len(RECORDS) - in_wal])
    if in_wal:
        _append_as_old_writer(path, version, RECORDS[len(RECORDS) - in_wal :], keep_wal=True)
    return RECORDS


def _row(record: StoredRecord, version: int) -> tuple[object, ...]:
    streams = orjson.dumps(record.streams).decode()
    row = (record.offset, record.event_id, record.event_type, streams, record.payload)
    return (*row, record.chain_hash) if version == 1 else (*row, record.chain_hash, None)


def _append_as_old_writer(
    path: Path, version: int, records: list[StoredRecord], *, keep_wal: bool = False
) -> None:
    """Append ``records`` as a chanlog of schema ``version`` did: for version 1 the row, all
    its streams in the index, and the head row, in one transaction each; for version 2 the
    same but the head row (a row with ``stream`` NULL has all its streams in the index). With
    ``keep_wal``, copy the write-ahead log aside before the connection closes (and folds it
    in), and put it back: what a writer killed before any checkpoint leaves."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        for record in records:
            _append_one(connection, version, record)
        if keep_wal:
            wal = Path(f"{path}-wal").read_bytes()
    finally:
        connection.close()
    if keep_wal:
        Path(f"{path}-wal").write_bytes(wal)
        assert Path(f"{path}-wal").stat().st_size > 0


def _append_one(connection: sqlite3.Connection, version: int, record: StoredRecord) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        marks = ", ".join("?" * (6 if version == 1 else 7))
        connection.execute(f"INSERT INTO events VALUES ({marks})", _row(record, version))
        connection.executemany(
            "INSERT OR IGNORE INTO streams (stream, position) VALUES (?, ?)",
            [(stream, record.offset) for stream in record.streams],
        )
        if version == 1:
            connection.execute(
                "UPDATE head SET length = ?, chain_hash = ? WHERE id = 0",
                (record.offset + 1, record.chain_hash),
            )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def assert_whole(path: Path, old: int, records: list[StoredRecord]) -> int:
    """The file is of version ``old`` or upgraded, with the tables of that version only,
    opens for writing, holds ``records`` exactly, and verifies. Returns the version it had."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    finally:
        connection.close()
    assert version in (old, SCHEMA_VERSION)
    assert table_names(path) == tables_of(version)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert scalar(path, "PRAGMA user_version") == SCHEMA_VERSION
        assert list(store.backend.read(0, len(records) + 5)) == records
        assert store.verify() == len(records)
    return int(version)


# -- killed during the upgrade -------------------------------------------------------------


def _open_in_child(path: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), "open", str(path), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("old", [1, 2])
def test_a_kill_at_any_point_of_an_upgrade_leaves_a_whole_file(tmp_path: Path, old: int) -> None:
    """About 20 points (every SQL statement from the writer's connection opening to the
    one after the upgrade's commit), each killed on a fresh copy of a file whose last
    records are still in its write-ahead log; the -wal and -shm left as the kill left them.
    0.5 s a point."""
    template = tmp_path / "template.db"
    records = _old_file(template, old, in_wal=7)
    dry = tmp_path / "dry.db"
    _copy_log(template, dry)
    opened = _open_in_child(dry, -1)
    assert opened.returncode == 0, opened.stderr
    points = opened.stdout.splitlines()
    first, committed = points.index("PRAGMA journal_mode = WAL"), points.index("COMMIT") + 1
    outcomes: dict[int, int] = {}
    for kill_at in range(first, committed + 2):
        path = tmp_path / f"{kill_at}.db"
        _copy_log(template, path)
        killed = _open_in_child(path, kill_at)
        assert killed.returncode == -9, (kill_at, killed.stderr)
        try:
            outcomes[kill_at] = assert_whole(path, old, records)
        except (AssertionError, StorageError) as failure:
            raise AssertionError(f"killed before {points[kill_at - 1]!r}: {failure}") from None
    assert {v for k, v in outcomes.items() if k <= committed} == {old}
    assert {v for k, v in outcomes.items() if k > committed} == {SCHEMA_VERSION}


def _copy_log(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    if Path(f"{source}-wal").exists():
        shutil.copyfile(f"{source}-wal", f"{target}-wal")


@pytest.mark.parametrize("old", [1, 2])
def test_a_wal_torn_inside_the_upgrade_commit_leaves_the_old_file(tmp_path: Path, old: int) -> None:
    """What a kill (or power cut) while SQLite writes the commit's frames leaves: the log
    cut anywhere in them. SQLite drops the frames after the last whole commit frame."""
    template = tmp_path / "template.db"
    records = _old_file(template, old)
    dry, upgraded = tmp_path / "dry.db", tmp_path / "upgraded.db"
    _copy_log(template, dry)
    _copy_log(template, upgraded)
    after_commit = _open_in_child(dry, -1).stdout.splitlines().index("COMMIT") + 2
    assert _open_in_child(upgraded, after_commit).returncode == -9  # the commit, no checkpoint
    wal = Path(f"{upgraded}-wal").read_bytes()
    assert len(wal) > 4096
    cuts = sorted({*range(0, len(wal), 1_553), *range(32, len(wal), 4096 + 24), len(wal) - 1})
    seen = set()
    for cut in cuts:
        path = tmp_path / f"cut{cut}.db"
        shutil.copyfile(template, path)
        Path(f"{path}-wal").write_bytes(wal[:cut])
        seen.add(assert_whole(path, old, records))
    assert seen == {old}
    path = tmp_path / "whole.db"
    shutil.copyfile(template, path)
    Path(f"{path}-wal").write_bytes(wal)
    assert assert_whole(path, old, records) == SCHEMA_VERSION


# -- several processes, and an older writer ------------------------------------------------


@pytest.mark.parametrize("old", [1, 2])
def test_processes_opening_an_old_file_at_once_all_open_it_and_lose_nothing(
    tmp_path: Path, old: int
) -> None:
    path = tmp_path / "old.db"
    records = _old_file(path, old, in_wal=5)
    said = first_lines_of_held_children([[sys.executable, str(CHILD), "hold", str(path)]] * 4)
    assert said == ["open"] * 4
    assert assert_whole(path, old, records) == SCHEMA_VERSION


@pytest.mark.parametrize("old", [1, 2])
def test_an_older_writer_appending_through_the_upgrade_loses_nothing(
    tmp_path: Path, old: int
) -> None:
    """A writer of version 1 is refused by the first append after the upgrade (its head
    table is gone); a writer of version 2 goes on appending (version 3 only added tables)
    until it opens the file again, which it then refuses. No committed record is lost."""
    path = tmp_path / "old.db"
    MAKERS[old](path, RECORDS[:32])  # a whole block of the index (version 2)
    more = stored_records(
        sample_events(3_000, start=40), Head(len(RECORDS), RECORDS[-1].chain_hash)
    )
    committed: list[StoredRecord] = list(RECORDS[:32])
    refused: list[BaseException] = []
    started, upgraded = threading.Event(), threading.Event()

    def old_writer() -> None:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        after = 0  # appends after the upgrade
        try:
            for record in [*RECORDS[32:], *more]:
                _append_one(connection, old, record)
                committed.append(record)
                started.set()
                after += upgraded.is_set()
                if after == 5:
                    break
                time.sleep(0.001)  # a writer between appends: SQLite's lock is not fair
        except sqlite3.Error as error:
            refused.append(error)
        finally:
            started.set()
            connection.close()

    writer = threading.Thread(target=old_writer)
    writer.start()
    started.wait(30)
    SqliteBackend(path).close()  # the upgrade, while the old writer appends
    upgraded.set()
    writer.join(60)
    assert 32 < len(committed) < len(RECORDS) + len(more)  # appended throughout
    if old == 1:
        assert len(refused) == 1
        assert "head" in str(refused[0]) or "columns" in str(refused[0])
    else:
        assert refused == []
    assert assert_whole(path, old, committed) == SCHEMA_VERSION


# -- files whose version or tables are wrong -----------------------------------------------


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize(
    ("version", "match"),
    [
        (-1, r"not a chanlog database \(schema version -1\)"),
        (-(2**31), r"not a chanlog database \(schema version -2147483648\)"),
        (0, r"not a chanlog database \(schema version 0\)"),
        (SCHEMA_VERSION + 1, rf"newer chanlog \(schema version {SCHEMA_VERSION + 1}; .* up to 3"),
        (2**31 - 1, r"newer chanlog \(schema version 2147483647;"),
    ],
)
def test_a_file_of_an_unknown_version_is_refused_untouched(
    tmp_path: Path, version: int, match: str, read_only: bool
) -> None:
    # The version is a signed 32-bit integer in the file's header: -1 is garbage, not a
    # version 4294967295 written by a newer chanlog.
    path = tmp_path / "log.db"
    make_v1_file(path, RECORDS)
    edit_database(path, f"PRAGMA user_version = {version}")
    assert_refused_untouched(path, match, read_only=read_only)


def test_a_v1_file_refused_read_only_gets_no_side_files(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path, RECORDS)
    assert_refused_untouched(path, "schema version 1, which this chanlog upgrades", read_only=True)


def _stamp(version: int) -> str:
    return f"PRAGMA user_version = {version}"


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize(
    ("old", "edits", "match"),
    [
        # A version 3 file stamped back to 2 by hand; a version 2 file given one table of 3.
        (2, ("CREATE TABLE consumers (name TEXT PRIMARY KEY)",), "consumers"),
        (3, (_stamp(2),), "consumers, parked_records"),
        # A version 1 file half upgraded by hand: the column of version 2, or no head.
        (1, ("ALTER TABLE events ADD COLUMN stream TEXT",), "has the stream column"),
        (1, ("CREATE TABLE parked_records (consumer TEXT)",), "parked_records"),
        (3, ("CREATE TABLE head (id INTEGER PRIMARY KEY)",), "head"),
    ],
)
def test_a_file_whose_tables_are_not_those_of_its_version_is_refused_untouched(
    tmp_path: Path, old: int, edits: tuple[str, ...], match: str, read_only: bool
) -> None:
    path = tmp_path / "log.db"
    if old == SCHEMA_VERSION:
        SqliteBackend(path).close()
    else:
        MAKERS[old](path, RECORDS)
    edit_database(path, *edits)
    stamped = scalar(path, "PRAGMA user_version")
    if read_only and stamped == 1:
        match = "schema version 1"  # refused read-only before its tables are looked at
    else:
        match = rf"damaged chanlog database \(schema version {stamped}, but .*{match}"
    assert_refused_untouched(path, match, read_only=read_only)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_schema_whose_text_does_not_decode_is_refused_as_unreadable(
    tmp_path: Path, read_only: bool
) -> None:
    """A damaged byte in the table definitions (found by the fuzz of damaged files): the
    check of the events table's columns got text that is not UTF-8, which Python's sqlite3
    refuses with an error SQLite did not raise and that has no SQLite error name; it escaped
    as an AttributeError instead of a StorageError."""
    path = tmp_path / "log.db"
    SqliteBackend(path).close()
    data = bytearray(path.read_bytes())
    at = data.index(b"BLOB NOT NULL UNIQUE")
    data[at + 4] = 0xFF  # 'BLOB\xffNOT': the column's declared type
    path.write_bytes(bytes(data))
    assert_refused_untouched(path, "unreadable database", read_only=read_only)


def _meta_version(value: str | None) -> str:
    if value is None:
        return "DELETE FROM chanlog_meta WHERE key = 'schema_version'"
    return f"UPDATE chanlog_meta SET value = '{value}' WHERE key = 'schema_version'"


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize(
    ("old", "row"),
    [(SCHEMA_VERSION, "2"), (SCHEMA_VERSION, "4"), (2, "3"), (SCHEMA_VERSION, None), (2, "two")],
)
def test_a_file_whose_meta_row_disagrees_with_its_header_version_is_refused_untouched(
    tmp_path: Path, old: int, row: str | None, read_only: bool
) -> None:
    """``PRAGMA user_version`` and ``chanlog_meta``'s ``schema_version`` are written
    together (at creation, and in the upgrade's one transaction), so a file where they
    differ was changed outside chanlog, and which of the two is wrong is unknown (ADR 0071).
    The tables were checked against the header first, so the message can say which value
    fits them."""
    path = tmp_path / "log.db"
    if old == SCHEMA_VERSION:
        SqliteBackend(path).close()
    else:
        MAKERS[old](path, RECORDS)
    edit_database(path, _meta_version(row))
    found = "has no schema_version row" if row is None else f"says schema_version {row!r}"
    match = (
        rf"^{path}: damaged chanlog database \(schema version {old} in its header "
        rf"\(PRAGMA user_version\), but chanlog_meta {found}\): it was changed outside "
        rf"chanlog\. Its tables are those of version {old}: restore the file from a backup, "
        rf"or set the row to agree \(INSERT OR REPLACE INTO chanlog_meta \(key, value\) "
        rf"VALUES \('schema_version', '{old}'\)\)$"
    )
    assert_refused_untouched(path, match, read_only=read_only)
    edit_database(  # what the message says to do
        path, f"INSERT OR REPLACE INTO chanlog_meta (key, value) VALUES ('schema_version', '{old}')"
    )
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == (len(RECORDS) if old != SCHEMA_VERSION else 0)
