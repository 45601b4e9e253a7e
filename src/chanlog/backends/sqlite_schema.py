"""The life of a chanlog SQLite file (ADRs 0011, 0018 and 0027): how it is created, how an
existing file is checked before chanlog writes anything to it, and how a file of schema
version 1 or 2 is upgraded to version 3. What the file holds is in
:mod:`chanlog.backends.sqlite_format`; the raw-bytes and write-ahead-log checks of a file
(ADR 0023) are in :mod:`chanlog.backends.sqlite_wal`.

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
of fewer than that many records themselves). Schema version 3 (ADR 0027) adds the tables of
durable consumers. An older file is upgraded in place, in one ``BEGIN IMMEDIATE``
transaction, the first time a writer opens it (:func:`upgrade`); a read-only handle reads a
version 2 file as it is (it keeps no consumers) and refuses a version 1 file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from pathlib import Path

from chanlog.backends.files import fsync_directory, not_writable
from chanlog.backends.head_file import HEAD_FILE_SUFFIX
from chanlog.backends.sqlite_format import (
    APPLICATION_ID,
    DDL,
    FORMAT_NAME,
    READ_ONLY_VERSIONS,
    SCHEMA_VERSION,
    STREAM_INDEX_BLOCK,
    TABLES,
    TABLES_V1,
    UPGRADE_FROM_V1,
    UPGRADE_FROM_V2,
    check_version,
    tables_of,
)
from chanlog.backends.sqlite_options import read_only_uri, unreadable_log
from chanlog.backends.sqlite_queries import SELECT_LAST
from chanlog.backends.sqlite_rows import head_of
from chanlog.backends.sqlite_wal import check_file_start
from chanlog.errors import NotFound, StorageError

__all__ = [
    "APPLICATION_ID",
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "SELECT_LAST",
    "STREAM_INDEX_BLOCK",
    "TABLES",
    "check_existing",
    "create_database",
    "head_of",
    "log_files",
    "prepare_file",
    "read_only_uri",
    "refuse_for_reading",
    "require_readable",
    "require_writable",
    "stream_index_block",
    "upgrade",
]


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
        for statement in DDL:
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
    fsync_directory(path.parent)
    return True


SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal", HEAD_FILE_SUFFIX)
"""The files a chanlog database has beside it: SQLite's write-ahead log, its index and a
rollback journal, and chanlog's remembered head."""


def log_files(path: str | os.PathLike[str]) -> frozenset[Path]:
    """The log file at ``path`` and its side files, each resolved (symbolic links
    followed): what nothing else may write to, neither a handler's output nor an export.
    Compare a path with them resolved too."""
    resolved = os.path.realpath(path)
    return frozenset(Path(f"{resolved}{suffix}") for suffix in ("", *SIDE_FILE_SUFFIXES))


def _left_beside(path: Path) -> bool:
    """Whether side files of a log are at ``path``'s name while ``path`` is missing (False
    when ``path`` exists again: another process created it meanwhile).

    A new database is never made among them: SQLite would take a leftover write-ahead log or
    journal for the new file's own and bring the deleted log back, or make the new file
    unreadable, and a leftover remembered head would have every verify report a cut.

    Raises:
        StorageError: naming them, and what to do.
    """
    found = [
        side.name
        for side in (path.with_name(path.name + suffix) for suffix in SIDE_FILE_SUFFIXES)
        if side.exists()
    ]
    if not found or path.exists():
        return bool(found)
    raise StorageError(
        f"{path}: no database file, but {', '.join(found)} beside it: the side files of a log "
        "deleted or moved without them. Put the log back, or remove them to start a new log "
        "there (chanlog never creates one among them: SQLite would take them for its own)"
    )


def prepare_file(path: Path, *, read_only: bool = False, create: bool = True) -> None:
    """Create the database file, or check the existing one, before any connection opens.

    Raises:
        NotFound: it is missing and may not be created (``read_only``, or ``create``
            False).
        StorageError: ``path`` is a directory, a named pipe, a device or a socket; a writer
            may not write it (:func:`require_writable`); or :func:`check_existing` refuses
            it.
    """
    if path.is_dir():
        raise StorageError(f"{path}: is a directory, not a chanlog database file")
    if not path.exists():
        if read_only or not create:
            reason = "read_only" if read_only else "create = false"
            raise NotFound(
                f"{path}: no such chanlog database file (opened with {reason}, which never "
                "creates one)"
            )
        if not _left_beside(path):
            create_database(path)
            return
        # Side files: another process may just have created the log (they come with it).
    if not path.is_file():
        # Opening a named pipe to read its header would wait for a writer, forever.
        raise StorageError(f"{path}: is {_special_kind(path)}, not a chanlog database file")
    if not read_only:
        require_writable(path)  # first: SQLite's own opening may change the side files
    check_existing(path, read_only=read_only)


_SPECIAL_FILES = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _special_kind(path: Path) -> str:
    """What a path that exists but is neither a file nor a directory is, in words."""
    return _SPECIAL_FILES.get(stat.S_IFMT(path.stat().st_mode), "not a regular file")


def require_writable(path: Path) -> None:
    """Refuse to open for writing a log this process may not write, before SQLite does: it
    would open the file read-only without a word (and create its ``-shm`` file as read-only
    as the file), and the first append would fail.

    Raises:
        StorageError: naming each file (or the directory) it may not write.
    """
    blocked = not_writable(path.absolute().parent, [path, Path(f"{path}-wal"), Path(f"{path}-shm")])
    if blocked:
        raise StorageError(
            f"{path}: cannot open for writing: this process may not write "
            f"{'; '.join(blocked)}; give it write access, or open the log read-only "
            "(read_only = true) to read it"
        )


def check_existing(path: Path, *, read_only: bool = False) -> None:
    """Refuse, without writing anything, a file chanlog must not open (``read_only``: a
    file that cannot be read without an upgrade, too, before SQLite makes side files for
    it).

    The raw header is checked first (:func:`~chanlog.backends.sqlite_wal.check_file_start`:
    no SQLite connection, so no side files appear for the common bad cases), then a
    read-only connection confirms what the header cannot show: changes still in the
    write-ahead log, and the tables.

    Raises:
        StorageError: naming the path and what is wrong with it.
    """
    check_file_start(path)
    _check_with_read_only_connection(path, read_only=read_only)


def _check_with_read_only_connection(path: Path, *, read_only: bool) -> None:
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
        # One read transaction: every check sees one snapshot, not a header from before
        # another process's upgrade and a meta row from after it.
        connection.execute("BEGIN")
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        if application_id != APPLICATION_ID:
            raise StorageError(f"{path}: not a chanlog database (application_id changed)")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        check_version(path, version)
        if read_only:
            refuse_for_reading(path, version)
        _check_tables(connection, path, version)
        _check_meta_version(connection, path, version)
        row = connection.execute("SELECT value FROM chanlog_meta WHERE key = 'format'").fetchone()
        if row is None or row[0] != FORMAT_NAME:
            raise StorageError(f"{path}: damaged chanlog database (no format marker)")
        if version == 1:
            if connection.execute("SELECT count(*) FROM head").fetchone()[0] != 1:
                raise StorageError(f"{path}: damaged chanlog database (head row missing)")
        else:
            stream_index_block(connection, path)
    except sqlite3.Error as exc:
        raise (
            unreadable_log(path, exc) or StorageError(f"{path}: unreadable database: {exc}")
        ) from exc
    except UnicodeDecodeError as exc:
        # A changed byte in the schema (or the meta table) can leave text that is not UTF-8,
        # which sqlite3 fails to decode into a str.
        raise StorageError(
            f"{path}: damaged chanlog database (text in its schema is not UTF-8: {exc}); the "
            "file was changed outside chanlog"
        ) from exc
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
    # isascii: str.isdigit() also accepts digits int() refuses ("²"); the length keeps
    # int() within its digit limit.
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isdigit()
        or len(value) > 18
        or int(value) < 1
    ):
        raise StorageError(
            f"{path}: damaged chanlog database (stream_index_block is {value!r}, "
            "not a positive integer)"
        )
    return int(value)


def require_readable(connection: sqlite3.Connection, path: Path) -> int:
    """Refuse, for a read-only handle, a file it cannot read without an upgrade (which only
    a writer may make); return the file's schema version.

    Raises:
        StorageError: the file's ``user_version`` is not one of :data:`READ_ONLY_VERSIONS`.
    """
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: unreadable database: {exc}") from exc
    refuse_for_reading(path, version)
    return version


def refuse_for_reading(path: Path, version: int) -> None:
    """Refuse a read-only handle a file of ``version`` (a version :func:`check_version`
    admits) that it cannot read without an upgrade.

    Raises:
        StorageError: ``version`` is not one of :data:`READ_ONLY_VERSIONS`.
    """
    if version not in READ_ONLY_VERSIONS:
        raise StorageError(
            f"{path}: schema version {version}, which this chanlog upgrades to version "
            f"{SCHEMA_VERSION} when it opens the file for writing; it cannot be read "
            "read-only before that (open it once without read_only)"
        )


_ALL_TABLES = TABLES | TABLES_V1


def _check_tables(connection: sqlite3.Connection, path: Path, version: int) -> None:
    """Refuse a file whose chanlog tables, or the ``stream`` column of its events, are not
    those of its schema ``version``: a file edited by hand half-way to another version,
    which an upgrade would fail on (or a reader misread).

    Raises:
        StorageError: naming the version and the tables (or the column) that do not fit.
    """
    tables = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    missing = tables_of(version) - tables
    if missing:
        raise StorageError(
            f"{path}: damaged chanlog database (missing tables: {', '.join(sorted(missing))})"
        )
    wrong = []
    foreign = sorted((tables & _ALL_TABLES) - tables_of(version))
    if foreign:
        wrong.append(f"it has the tables {', '.join(foreign)} of another version")
    columns = {row[1] for row in connection.execute("PRAGMA table_info(events)")}
    if ("stream" in columns) != (version > 1):
        has = "has" if version == 1 else "lacks"
        wrong.append(f"its events table {has} the stream column of version 2 and later")
    if wrong:
        raise StorageError(
            f"{path}: damaged chanlog database (schema version {version}, but "
            f"{'; '.join(wrong)}): it was changed outside chanlog, half-way to another "
            "version; restore it from a backup, or finish or undo the change by hand"
        )


def _check_meta_version(connection: sqlite3.Connection, path: Path, version: int) -> None:
    """Refuse a file whose ``chanlog_meta`` ``schema_version`` row is not its header's
    ``user_version`` (ADR 0071). chanlog writes the two together (in the file it builds, and
    in :func:`upgrade`'s one transaction), so a difference is an edit from outside, and
    which of them is wrong cannot be told; :func:`_check_tables` has already found the
    tables to be those of ``version``, so the message can say which value fits them.

    Raises:
        StorageError: the row is missing or says another version.
    """
    row = connection.execute(
        "SELECT value FROM chanlog_meta WHERE key = 'schema_version'"
    ).fetchone()
    if row is not None and row[0] == str(version):
        return
    found = "has no schema_version row" if row is None else f"says schema_version {row[0]!r}"
    raise StorageError(
        f"{path}: damaged chanlog database (schema version {version} in its header (PRAGMA "
        f"user_version), but chanlog_meta {found}): it was changed outside chanlog. Its "
        f"tables are those of version {version}: restore the file from a backup, or set the "
        "row to agree (INSERT OR REPLACE INTO chanlog_meta (key, value) VALUES "
        f"('schema_version', '{version}'))"
    )


def upgrade(connection: sqlite3.Connection, path: Path) -> bool:
    """Bring the database open on ``connection`` (a writer, in autocommit mode) to
    :data:`SCHEMA_VERSION`, in one ``BEGIN IMMEDIATE`` transaction: all of it or, on any
    failure, nothing. Several processes opening one old file at once upgrade it once.

    Version 1 keeps its rows: they have no ``stream`` and are all in the ``streams`` index,
    which is what version 2 reads from such rows. The ``head`` row goes, after it was
    compared with the last record: a version 1 log whose records were cut off the end is
    refused, not upgraded, because after the upgrade nothing in the file would show it.
    Version 2 gains the (empty) consumer tables of version 3; no row changes.

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
            check_version(path, version)
            if version == 1:
                _upgrade_from_v1(connection, path)
            for statement in UPGRADE_FROM_V2:
                connection.execute(statement)
            _set_meta(connection, "schema_version", str(SCHEMA_VERSION))
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


def _upgrade_from_v1(connection: sqlite3.Connection, path: Path) -> None:
    """Version 1 -> 2, inside :func:`upgrade`'s transaction."""
    _check_v1_head(connection, path)
    for statement in UPGRADE_FROM_V1:
        connection.execute(statement)
    _set_meta(connection, "stream_index_block", str(STREAM_INDEX_BLOCK))


def _set_meta(connection: sqlite3.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT OR REPLACE INTO chanlog_meta (key, value) VALUES (?, ?)", (key, value)
    )


def _check_v1_head(connection: sqlite3.Connection, path: Path) -> None:
    head = connection.execute("SELECT length, chain_hash FROM head WHERE id = 0").fetchone()
    last = head_of(connection.execute(SELECT_LAST).fetchone(), path)
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
