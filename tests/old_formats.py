"""Logs as older chanlogs wrote them: files of sqlite schema version 1 (before ADR 0018)
and 2 (before ADR 0027), for the tests of the upgrade path."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import APPLICATION_ID
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredRecord, StoredSnapshot
from sqlite_edits import edit_database

# The tables of schema version 1, exactly as chanlog wrote them before version 2.
V1_DDL = (
    "CREATE TABLE chanlog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE head ("
    " id INTEGER PRIMARY KEY CHECK (id = 0),"
    " length INTEGER NOT NULL,"
    " chain_hash BLOB NOT NULL)",
    "CREATE TABLE events ("
    " position INTEGER PRIMARY KEY,"
    " event_id BLOB NOT NULL UNIQUE,"
    " event_type TEXT NOT NULL,"
    " streams TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " chain_hash BLOB NOT NULL)",
    "CREATE TABLE streams ("
    " stream TEXT NOT NULL,"
    " position INTEGER NOT NULL,"
    " PRIMARY KEY (stream, position)) WITHOUT ROWID",
    "CREATE TABLE snapshots ("
    " position INTEGER PRIMARY KEY,"
    " versions TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " snapshot_hash BLOB NOT NULL)",
)


def make_v1_file(
    path: Path, records: Sequence[StoredRecord], snapshots: Sequence[StoredSnapshot] = ()
) -> None:
    """A log as schema version 1 stored ``records``: all streams as JSON in the row, every
    (stream, position) in the index, and the head row."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA page_size = 4096")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("BEGIN IMMEDIATE")
        for statement in V1_DDL:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO chanlog_meta (key, value) VALUES (?, ?)",
            [("format", "chanlog"), ("schema_version", "1")],
        )
        head = Head(len(records), records[-1].chain_hash if records else GENESIS_CHAIN_HASH)
        connection.execute(
            "INSERT INTO head (id, length, chain_hash) VALUES (0, ?, ?)",
            (head.length, head.chain_hash),
        )
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    record.offset,
                    record.event_id,
                    record.event_type,
                    orjson.dumps(record.streams).decode(),
                    record.payload,
                    record.chain_hash,
                )
                for record in records
            ],
        )
        connection.executemany(
            "INSERT OR IGNORE INTO streams (stream, position) VALUES (?, ?)",
            [(stream, record.offset) for record in records for stream in record.streams],
        )
        connection.executemany(
            "INSERT INTO snapshots VALUES (?, ?, ?, ?)",
            [
                (s.offset, orjson.dumps(s.versions).decode(), s.data, s.snapshot_hash)
                for s in snapshots
            ],
        )
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def make_v2_file(
    path: Path, records: Sequence[StoredRecord], snapshot: StoredSnapshot | None = None
) -> None:
    """A log as schema version 2 left it. Versions 2 and 3 differ only by the consumer
    tables, so a version 3 file without them, stamped 2, is byte for byte what version 2
    wrote for the same records (stream index blocks included)."""
    backend = SqliteBackend(path, durability="normal")
    with backend.write() as transaction:
        transaction.append(records)
    if snapshot is not None:
        backend.save_snapshot(snapshot)
    backend.close()
    edit_database(
        path,
        "DROP TABLE consumers",
        "DROP TABLE parked_records",
        "UPDATE chanlog_meta SET value = '2' WHERE key = 'schema_version'",
        "PRAGMA user_version = 2",
    )
