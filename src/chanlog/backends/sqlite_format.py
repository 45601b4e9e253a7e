"""What a chanlog SQLite file is: its stamps, its tables and the statements that make them
(ADRs 0011, 0018 and 0027). The other ``sqlite_*`` modules create, check, upgrade, read and write
files of this shape.

A chanlog database is an SQLite file in WAL mode, stamped with ``PRAGMA application_id``
(:data:`APPLICATION_ID`, ASCII ``chlg``) and ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

from pathlib import Path

from chanlog.errors import StorageError

__all__ = [
    "APPLICATION_ID",
    "CONSUMER_DDL",
    "DDL",
    "FORMAT_NAME",
    "READ_ONLY_VERSIONS",
    "SCHEMA_VERSION",
    "SQLITE_HEADER_SIZE",
    "SQLITE_MAGIC",
    "STREAM_INDEX_BLOCK",
    "TABLES",
    "TABLES_V1",
    "TABLES_V2",
    "UPGRADE_FROM_V1",
    "UPGRADE_FROM_V2",
    "check_version",
    "tables_of",
]

APPLICATION_ID = 0x63686C67
"""``PRAGMA application_id`` of every chanlog database: the ASCII bytes ``chlg``."""

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` this chanlog writes; a file with a greater one is refused, a file
of version 1 or 2 is upgraded when a writer opens it."""

READ_ONLY_VERSIONS = (2, 3)
"""Versions a read-only handle reads as they are (a version 2 file has no consumer tables:
it keeps no consumers until a writer upgrades it)."""

FORMAT_NAME = "chanlog"
"""The ``format`` row of the ``chanlog_meta`` table."""

STREAM_INDEX_BLOCK = 32
"""Positions entered in the ``streams`` index together, written into each new file's
``chanlog_meta`` (``stream_index_block``); a file keeps the block it was created with."""

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

SQLITE_HEADER_SIZE = 100
"""Bytes of the SQLite database header (https://www.sqlite.org/fileformat2.html)."""

# Columns are named ``position`` rather than ``offset``: OFFSET is an SQL keyword.
# ``stream`` is an event's first stream and ``streams`` (JSON) the rest, or '' when there are
# none; rows written by schema version 1 have ``stream`` NULL and all their streams in
# ``streams``. ``stream`` is last because version 1 files gain it with ALTER TABLE.
RECORD_DDL = (
    "CREATE TABLE chanlog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE events ("
    " position INTEGER PRIMARY KEY,"
    " event_id BLOB NOT NULL UNIQUE,"
    " event_type TEXT NOT NULL,"
    " streams TEXT NOT NULL,"
    " payload BLOB NOT NULL,"
    " chain_hash BLOB NOT NULL,"
    " stream TEXT)",
    # Every (stream, position) of the positions below the last whole block; the tail after
    # it is read from the events rows (ADR 0018).
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
"""The statements creating the tables of the log itself (those of schema version 2)."""

# Durable consumers (DESIGN section 10, ADR 0027). Times are unix seconds (REAL) of the
# writing process's clock; ``subjects`` is a JSON list of patterns; the parked count is not
# stored but counted, so it cannot disagree with the parked rows.
CONSUMER_DDL = (
    "CREATE TABLE consumers ("
    " name TEXT PRIMARY KEY,"
    " position INTEGER NOT NULL,"
    " subjects TEXT NOT NULL,"
    " handled INTEGER NOT NULL,"
    " lease_holder TEXT,"
    " lease_expires_at REAL,"
    " last_error TEXT,"
    " updated_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE parked_records ("
    " consumer TEXT NOT NULL,"
    " position INTEGER NOT NULL,"
    " event_id TEXT NOT NULL,"
    " event_type TEXT NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " error TEXT NOT NULL,"
    " parked_at REAL NOT NULL,"
    " replay INTEGER NOT NULL,"
    " PRIMARY KEY (consumer, position)) WITHOUT ROWID",
)

DDL = RECORD_DDL + CONSUMER_DDL
"""The statements creating the tables of a new database of :data:`SCHEMA_VERSION`."""

TABLES_V2 = frozenset({"chanlog_meta", "events", "streams", "snapshots"})
"""The tables of a database of schema version 2."""

TABLES = TABLES_V2 | {"consumers", "parked_records"}
"""The tables every chanlog database of :data:`SCHEMA_VERSION` has."""

TABLES_V1 = TABLES_V2 | {"head"}
"""The tables of a database of schema version 1 (its ``head`` row held length and chain)."""

UPGRADE_FROM_V1 = (
    "ALTER TABLE events ADD COLUMN stream TEXT",
    "DROP TABLE head",
)
"""Schema version 1 -> 2, run after the head row was checked against the last record.
Adding a nullable column only rewrites the schema, not the rows, so this costs the same on
any log."""

UPGRADE_FROM_V2 = CONSUMER_DDL
"""Schema version 2 -> 3: the consumer tables, empty (no row of version 2 changes)."""


def tables_of(version: int) -> frozenset[str]:
    """The tables a database of schema ``version`` (1 to :data:`SCHEMA_VERSION`) has."""
    return {1: TABLES_V1, 2: TABLES_V2}.get(version, TABLES)


def check_version(path: Path, version: int) -> None:
    """Refuse a ``user_version`` this chanlog cannot read.

    Raises:
        StorageError: ``version`` is newer than :data:`SCHEMA_VERSION`, or below 1 (not a
            chanlog database).
    """
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: written by a newer chanlog (schema version {version}; this chanlog "
            f"reads up to {SCHEMA_VERSION}); upgrade chanlog to open it"
        )
    if version < 1:
        raise StorageError(f"{path}: not a chanlog database (schema version {version})")
