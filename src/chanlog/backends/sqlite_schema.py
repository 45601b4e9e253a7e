"""The on-disk format of a chanlog SQLite database: how it is created, how a file is checked
before chanlog writes anything to it (ADR 0011), and how a file of schema version 1 is
upgraded to version 2 (ADR 0018).

A chanlog database is an SQLite file in WAL mode, stamped with ``PRAGMA application_id``
(:data:`APPLICATION_ID`, ASCII ``chlg``) and ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`).
A new database is built completely in a private temporary file and then hard-linked into place,
so another process never sees a half-created database, and an existing file is inspected
(first its raw header bytes, then through a read-only connection) before a writable
connection is ever opened on it: a file that is not a chanlog database, a truncated one, or
one written by a newer chanlog raises :class:`~chanlog.errors.StorageError` and stays
byte-for-byte untouched.

Schema version 2 (ADR 0018) writes as few pages per commit as raw SQLite needs for an event
row and its unique event id: the length and last chain hash are read from the last row
instead of a ``head`` row, and the ``streams`` index is written a block of
:data:`STREAM_INDEX_BLOCK` positions at a time (readers look through the unindexed tail
of fewer than that many records themselves). A version 1 file is upgraded in place, in one
``BEGIN IMMEDIATE`` transaction, the first time a writer opens it (:func:`upgrade`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from pathlib import Path

from chanlog.errors import StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head

__all__ = [
    "APPLICATION_ID",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "STREAM_INDEX_BLOCK",
    "TABLES",
    "check_existing",
    "create_database",
    "head_of",
    "read_only_uri",
    "stream_index_block",
    "upgrade",
]

APPLICATION_ID = 0x63686C67
"""``PRAGMA application_id`` of every chanlog database: the ASCII bytes ``chlg``."""

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` this chanlog writes; a file with a greater one is refused, a file
of version 1 is upgraded when a writer opens it."""

FORMAT_NAME = "chanlog"
"""The ``format`` row of the ``chanlog_meta`` table."""

STREAM_INDEX_BLOCK = 32
"""Positions entered in the ``streams`` index together, written into each new file's
``chanlog_meta`` (``stream_index_block``); a file keeps the block it was created with."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_SIZE = 100

# Columns are named ``position`` rather than ``offset``: OFFSET is an SQL keyword.
# ``stream`` is an event's first stream and ``streams`` (JSON) the rest, or '' when there are
# none; rows written by schema version 1 have ``stream`` NULL and all their streams in
# ``streams``. ``stream`` is last because version 1 files gain it with ALTER TABLE.
_DDL = (
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

TABLES = frozenset({"chanlog_meta", "events", "streams", "snapshots"})
"""The tables every chanlog database of :data:`SCHEMA_VERSION` has."""

_TABLES_V1 = TABLES | {"head"}

# Schema version 1 -> 2, after the head row was checked against the last record. Adding a
# nullable column only rewrites the schema, not the rows, so this costs the same on any log.
_UPGRADE_FROM_V1 = (
    "ALTER TABLE events ADD COLUMN stream TEXT",
    "DROP TABLE head",
)


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """An SQLite URI opening ``path`` read-only (quoted, so any file name works).

    ``immutable`` reads the main file only, without locks or side files: right when there is
    no write-ahead log to read.
    """
    query = "?immutable=1" if immutable else "?mode=ro"
    return "file:" + urllib.parse.quote(str(path.resolve())) + query


def create_database(path: Path) -> bool:
    """Create an empty chanlog database at ``path`` atomically.

    The database is built and closed in a temporary file in the same directory, then
    hard-linked to ``path``, which fails if ``path`` exists: of several processes creating one
    database at once, exactly one wins and the others open what it made.

    Returns:
        True when this call created ``path``; False when it already existed.

    Raises:
        StorageError: the directory is missing or not writable, or SQLite failed.
    """
    directory = path.parent
    if not directory.is_dir():
        raise StorageError(f"{path}: directory {directory} does not exist")
    temporary = directory / f".{path.name}.creating-{os.getpid()}-{threading.get_ident()}"
    try:
        _build(temporary)
        return _publish(temporary, path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the database: {exc}") from exc
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot create the database: {exc}") from exc
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _build(temporary: Path) -> None:
    connection = sqlite3.connect(temporary, isolation_level=None)
    try:
        connection.execute("PRAGMA page_size = 4096")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StorageError(f"{temporary}: SQLite refused WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("BEGIN IMMEDIATE")
        for statement in _DDL:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO chanlog_meta (key, value) VALUES (?, ?)",
            [
                ("format", FORMAT_NAME),
                ("schema_version", str(SCHEMA_VERSION)),
                ("stream_index_block", str(STREAM_INDEX_BLOCK)),
            ],
        )
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
        # Fold the WAL into the main file so the published file is complete on its own.
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _publish(temporary: Path, path: Path) -> bool:
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError:
        # A filesystem without hard links: claim the name exclusively and copy the bytes in.
        # A process opening the file in between sees it empty or short and gets a clear
        # StorageError rather than a second, diverging database.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(descriptor, temporary.read_bytes())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - filesystems that refuse directory fsync
        pass
    finally:
        os.close(descriptor)


def check_existing(path: Path) -> None:
    """Refuse, without writing anything, a file chanlog must not open for writing.

    The raw header is checked first (no SQLite connection, so no side files appear for the
    common bad cases), then a read-only connection confirms what the header cannot show:
    changes still in the write-ahead log, and the tables.

    Raises:
        StorageError: naming the path and what is wrong with it.
    """
    size = path.stat().st_size
    if size == 0:
        raise StorageError(
            f"{path}: empty file (0 bytes), not a chanlog database; chanlog never leaves an "
            "empty database behind, so it was truncated or made by another program"
        )
    with path.open("rb") as handle:
        header = handle.read(_HEADER_SIZE)
    if not header.startswith(_SQLITE_MAGIC) and not _SQLITE_MAGIC.startswith(header):
        raise StorageError(f"{path}: not a chanlog database (not an SQLite file)")
    if len(header) < _HEADER_SIZE:
        raise StorageError(
            f"{path}: truncated database file ({size} bytes, shorter than the SQLite header)"
        )
    _check_header(path, header, size)
    _check_with_read_only_connection(path)


def _check_header(path: Path, header: bytes, size: int) -> None:
    application_id = int.from_bytes(header[68:72], "big")
    if application_id != APPLICATION_ID:
        raise StorageError(
            f"{path}: not a chanlog database (SQLite application_id is 0x{application_id:08x}, "
            f"chanlog writes 0x{APPLICATION_ID:08x})"
        )
    _check_version(path, int.from_bytes(header[60:64], "big"))
    page_size = int.from_bytes(header[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size & (page_size - 1):
        raise StorageError(f"{path}: corrupt database header (page size {page_size})")
    if size % page_size:
        raise StorageError(
            f"{path}: truncated database file ({size} bytes is not a whole number of "
            f"{page_size}-byte pages)"
        )
    change_counter = header[24:28]
    valid_for = header[92:96]
    page_count = int.from_bytes(header[28:32], "big")
    # The in-header page count is only trustworthy when SQLite stamped it with the current
    # change counter (every SQLite since 3.7.0 does).
    if change_counter == valid_for and size < page_count * page_size:
        raise StorageError(
            f"{path}: truncated database file ({size} bytes, the header says "
            f"{page_count * page_size})"
        )


def _check_version(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: written by a newer chanlog (schema version {version}; this chanlog "
            f"reads up to {SCHEMA_VERSION}); upgrade chanlog to open it"
        )
    if version < 1:
        raise StorageError(f"{path}: not a chanlog database (schema version {version})")


def _check_with_read_only_connection(path: Path) -> None:
    # Without a write-ahead log the main file is the whole database: read it immutable, so
    # no -wal/-shm files appear next to a file that may not be ours. With a WAL present,
    # committed changes may live only there, so SQLite must read it (its side files exist).
    immutable = not Path(f"{path}-wal").exists()
    try:
        connection = sqlite3.connect(
            read_only_uri(path, immutable=immutable), uri=True, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the database read-only: {exc}") from exc
    try:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        if application_id != APPLICATION_ID:
            raise StorageError(f"{path}: not a chanlog database (application_id changed)")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        _check_version(path, version)
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        missing = (_TABLES_V1 if version == 1 else TABLES) - tables
        if missing:
            raise StorageError(
                f"{path}: damaged chanlog database (missing tables: {', '.join(sorted(missing))})"
            )
        row = connection.execute("SELECT value FROM chanlog_meta WHERE key = 'format'").fetchone()
        if row is None or row[0] != FORMAT_NAME:
            raise StorageError(f"{path}: damaged chanlog database (no format marker)")
        if version == 1:
            if connection.execute("SELECT count(*) FROM head").fetchone()[0] != 1:
                raise StorageError(f"{path}: damaged chanlog database (head row missing)")
        else:
            stream_index_block(connection, path)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: unreadable database: {exc}") from exc
    finally:
        connection.close()


def stream_index_block(connection: sqlite3.Connection, path: Path) -> int:
    """The ``stream_index_block`` of the (version 2) database open on ``connection``.

    Raises:
        StorageError: the row is missing or not a positive integer.
    """
    row = connection.execute(
        "SELECT value FROM chanlog_meta WHERE key = 'stream_index_block'"
    ).fetchone()
    value = row[0] if row is not None else None
    if not isinstance(value, str) or not value.isdigit() or int(value) < 1:
        raise StorageError(
            f"{path}: damaged chanlog database (stream_index_block is {value!r}, "
            "not a positive integer)"
        )
    return int(value)


def upgrade(connection: sqlite3.Connection, path: Path) -> bool:
    """Bring the database open on ``connection`` (a writer, in autocommit mode) to
    :data:`SCHEMA_VERSION`, in one ``BEGIN IMMEDIATE`` transaction: all of it or, on any
    failure, nothing. Several processes opening one old file at once upgrade it once.

    Version 1 keeps its rows: they have no ``stream`` and are all in the ``streams`` index,
    which is what version 2 reads from such rows. The ``head`` row goes, after it was
    compared with the last record: a version 1 log whose records were cut off the end is
    refused, not upgraded, because after the upgrade nothing in the file would show it.

    Returns:
        Whether this call upgraded the file.

    Raises:
        StorageError: the version 1 file is damaged, or SQLite failed.
    """
    try:
        if connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return False
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:  # another process was first
                connection.execute("ROLLBACK")
                return False
            _check_version(path, version)
            _check_v1_head(connection, path)
            for statement in _UPGRADE_FROM_V1:
                connection.execute(statement)
            connection.executemany(
                "INSERT OR REPLACE INTO chanlog_meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("stream_index_block", str(STREAM_INDEX_BLOCK)),
                ],
            )
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StorageError(
            f"{path}: cannot upgrade the database to schema version {SCHEMA_VERSION}: {exc}"
        ) from exc
    return True


SELECT_LAST = "SELECT position, chain_hash FROM events ORDER BY position DESC LIMIT 1"
"""The last record's position and chain hash: the rowid b-tree's last entry, O(log n)."""


def head_of(last: tuple[int, bytes] | None) -> Head:
    """The head after the last record (a :data:`SELECT_LAST` row), or of an empty log."""
    return Head(0, GENESIS_CHAIN_HASH) if last is None else Head(last[0] + 1, last[1])


def _check_v1_head(connection: sqlite3.Connection, path: Path) -> None:
    head = connection.execute("SELECT length, chain_hash FROM head WHERE id = 0").fetchone()
    last = head_of(connection.execute(SELECT_LAST).fetchone())
    if head is None:
        reason = "no head row"
    elif head[0] != last.length:
        reason = f"its head row says {head[0]} records, the events end at offset {last.length}"
    elif head[1] != last.chain_hash:
        reason = "its head row's chain hash is not the last record's"
    else:
        return
    raise StorageError(
        f"{path}: damaged chanlog database of schema version 1 ({reason}): records were cut "
        "off the end or edited, so chanlog will not upgrade it; check it with the chanlog "
        "that wrote it (chanlog verify) and recover from a backup"
    )
