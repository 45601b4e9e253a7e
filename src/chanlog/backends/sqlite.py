"""The ``sqlite`` backend: a durable log in one SQLite file, safe to share between processes.

Configuration (keyword options, ``[backend]`` in chanlog.toml)::

    SqliteBackend(path="node.db", durability="full", timeout=30.0, poll_interval=0.05)

- ``durability = "full"`` (default): ``synchronous = FULL``, the write-ahead log is fsync'd at
  every commit, so an acknowledged append survives power loss. ``"normal"``:
  ``synchronous = NORMAL``, an acknowledged append survives a crash of the process (not of the
  machine) and commits cost no fsync.
- ``timeout``: seconds a writer waits for another process to release the writer lock before
  :class:`~chanlog.errors.StorageError`.
- ``poll_interval``: how often :meth:`SqliteBackend.wait` looks for appends (the store
  announces its own appends; this is how it learns of other processes' appends).

Several processes may open one file (ADR 0010). :meth:`SqliteBackend.write` starts with
``BEGIN IMMEDIATE``, which takes SQLite's writer lock across processes, and reads the head
(the last record) inside it, so offsets stay dense and in commit order whoever appends.
Readers never block the writer (WAL). Reads fetch bounded chunks through a small pool of
read-only connections, so a large read never holds a lock or the whole log in memory, and
many threads can read at once. The file format and how bad files are refused are described
in :mod:`chanlog.backends.sqlite_schema` (ADRs 0011 and 0018); a file of an older schema
version is upgraded when it is opened.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson

from chanlog.backends.sqlite_schema import (
    SELECT_LAST,
    check_existing,
    create_database,
    head_of,
    stream_index_block,
    upgrade,
)
from chanlog.errors import ChanlogError, ConfigError, IntegrityError, StorageError
from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = [
    "DURABILITY_LEVELS",
    "FIND_CHUNK",
    "READ_CHUNK",
    "WAL_AUTOCHECKPOINT_PAGES",
    "WRITER_CACHE_KIB",
    "SqliteBackend",
]

DURABILITY_LEVELS = {"full": "FULL", "normal": "NORMAL"}
"""``durability`` option → SQLite ``synchronous`` setting."""

READ_CHUNK = 512
"""Rows fetched per query by streamed reads."""

_MAX_POSITION = 2**63 - 1  # SQLite integers are signed 64-bit
_MAX_IDLE_READERS = 8
_T = TypeVar("_T")

FIND_CHUNK = 500
"""Event ids looked up per query by ``find_many``."""

WRITER_CACHE_KIB = 16_384
"""Page cache of the writing connection (SQLite's default is 2 MiB). Event ids are random,
so each batch touches index pages all over the event-id index; once a log outgrows the
cache every lookup and insert rereads pages from the operating system (ADR 0011)."""

WAL_AUTOCHECKPOINT_PAGES = 4_000
"""Write-ahead-log pages (about 16 MB) after which a commit copies the log into the main
file (SQLite's default is 1,000). Pages rewritten by several commits are copied once per
checkpoint, so fewer checkpoints copy fewer pages; durability does not change, as every
commit is still fsync'd in the write-ahead log."""

_SELECT_RECORD = (
    "SELECT position, event_id, event_type, streams, payload, chain_hash, stream FROM events"
)
_FIND_ONE = "SELECT position FROM events WHERE event_id = ?"
_DELETE_FROM = "DELETE FROM events WHERE position >= ?"
_INSERT_EVENT = (
    "INSERT INTO events (position, event_id, event_type, streams, payload, chain_hash, stream)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# Entering a block of positions in the streams index: the first streams straight from the
# rows, in SQL; the rest (only events of several streams, and rows of schema version 1)
# through Python. OR IGNORE: rows of version 1 are in the index already.
_INDEX_FIRST_STREAMS = (
    "INSERT OR IGNORE INTO streams (stream, position) SELECT stream, position FROM events"
    " WHERE position >= ? AND position < ? AND stream IS NOT NULL"
)
_SELECT_MORE_STREAMS = (
    "SELECT position, stream, streams FROM events"
    " WHERE position >= ? AND position < ? AND streams != ''"
)
_INSERT_STREAM = "INSERT OR IGNORE INTO streams (stream, position) VALUES (?, ?)"
_COUNT_INDEXED = "SELECT count(*) FROM streams WHERE stream = ? AND position < ?"
# Candidates in the unindexed tail: the stream is the first one, or may be among the rest.
_TAIL_CANDIDATES = " WHERE position >= ? AND position < ? AND (stream = ? OR streams != '')"
_SELECT_TAIL_STREAMS = "SELECT stream, streams FROM events" + _TAIL_CANDIDATES
_READ_TAIL = _SELECT_RECORD + _TAIL_CANDIDATES + " ORDER BY position"
_READ_INDEXED = (
    "SELECT e.position, e.event_id, e.event_type, e.streams, e.payload, e.chain_hash, e.stream"
    " FROM streams AS s JOIN events AS e ON e.position = s.position"
    " WHERE s.stream = ? AND s.position >= ? AND s.position < ?"
    " ORDER BY s.position LIMIT ?"
)
_FIND_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, FIND_CHUNK)
_FIND_IN = {
    size: "SELECT event_id, position FROM events WHERE event_id IN (" + ", ".join("?" * size) + ")"
    for size in _FIND_SIZES
}


def _record(row: tuple[Any, ...]) -> StoredRecord:
    """The record of an events row. A row whose columns do not have the types chanlog
    writes (a flipped byte can turn a blob into an int or text) or whose ``streams`` do not
    parse is :class:`~chanlog.errors.IntegrityError` at its offset, rather than a record
    that fails later, far from the damage. The checks are type identities only (this runs
    once per record read: they add about a tenth to the backend's read of a record, and
    little next to decoding its event); a changed byte inside a value of the right type is
    what ``verify()`` finds."""
    position, event_id, event_type, more, payload, chain_hash, first = row
    if (
        type(event_id) is not bytes
        or type(chain_hash) is not bytes
        or type(payload) is not bytes
        or type(event_type) is not str
        or type(more) is not str
        or type(position) is not int
    ):
        raise _damaged_row(row)
    if first is None:  # no streams, or a row of schema version 1 (all of them in ``more``)
        streams: tuple[str, ...] = tuple(_more_streams(position, more)) if more else ()
    elif type(first) is not str:
        raise _damaged_row(row)
    elif more:
        streams = (first, *_more_streams(position, more))
    else:
        streams = (first,)
    return StoredRecord(position, event_id, event_type, streams, payload, chain_hash)


def _more_streams(position: int, more: str) -> list[str]:
    """The streams listed in a row's ``streams`` column (a JSON list of strings)."""
    try:
        streams = orjson.loads(more)
    except orjson.JSONDecodeError as exc:
        raise _damaged(position, f"its streams do not parse ({exc})") from exc
    if type(streams) is not list:
        raise _damaged(position, f"its streams are not a list: {_short(more)}")
    for stream in streams:
        if type(stream) is not str:
            raise _damaged(position, f"its streams are not all strings: {_short(more)}")
    return streams


_COLUMN_TYPES = (
    ("position", int),
    ("event_id", bytes),
    ("event_type", str),
    ("streams", str),
    ("payload", bytes),
    ("chain_hash", bytes),
    ("stream", str),
)


def _damaged_row(row: tuple[Any, ...]) -> ChanlogError:
    """The error for an events row whose columns have the wrong types (off the hot path:
    only called once :func:`_record` found something wrong)."""
    position = row[0]
    for (name, expected), value in zip(_COLUMN_TYPES, row, strict=True):
        if name == "stream" and value is None:
            continue
        if type(value) is not expected:
            problem = f"its {name} is {type(value).__name__}, not {expected.__name__}"
            break
    else:  # pragma: no cover - only called for a row that fails a check above
        problem = "it does not have the columns chanlog writes"
    if type(position) is not int:
        return StorageError(
            f"damaged chanlog database: a record's position is {_short(position)}, not an "
            "integer (the file was changed outside chanlog)"
        )
    return _damaged(position, problem)


def _damaged(position: int, problem: str) -> IntegrityError:
    return IntegrityError(
        f"offset {position}: damaged record: {problem}; the record was changed outside chanlog",
        offset=position,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_stream(stream: str, first: str | None, more: str) -> bool:
    """Whether a row with these stream columns belongs to ``stream``.

    A row whose ``streams`` column is damaged (not a JSON list) may belong to any stream:
    it counts as a candidate, so a read hands it to :func:`_record`, which names its
    offset in the :class:`~chanlog.errors.IntegrityError`.
    """
    if first == stream:
        return True
    if not more:
        return False
    try:
        streams = orjson.loads(more)
    except (orjson.JSONDecodeError, TypeError):
        return True
    return type(streams) is not list or stream in streams


def _encodable_path(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return True


def _count_stream(connection: sqlite3.Connection, stream: str, length: int, block: int) -> int:
    """How many of the first ``length`` records belong to ``stream``: the index rows of the
    whole blocks, plus the matching rows of the tail after them."""
    indexed = length - length % block
    found = int(connection.execute(_COUNT_INDEXED, (stream, indexed)).fetchone()[0])
    candidates = connection.execute(_SELECT_TAIL_STREAMS, (indexed, length, stream)).fetchall()
    return found + sum(1 for first, more in candidates if _in_stream(stream, first, more))


class _SqliteTransaction:
    """The write session :meth:`SqliteBackend.write` returns: entering it takes the writer
    lock and ``BEGIN IMMEDIATE`` and reads the head; leaving it commits (or rolls back on an
    exception) and releases the lock.

    The store calls these methods once per event or per batch, so they talk to SQLite
    directly (no closures, statements cached by their text) and wrap only the failures.
    """

    __slots__ = ("_backend", "_block", "_connection", "_length", "head")

    head: Head
    """The head of the log when the writer lock was taken (set on entering)."""

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend
        self._block = backend._block
        self._connection = backend._writer
        self._length = 0

    def __enter__(self) -> _SqliteTransaction:
        backend = self._backend
        backend._write_lock.acquire()
        try:
            if backend._closed:
                raise StorageError(f"{backend.path}: the backend is closed")
            connection = backend._writer
            if connection.in_transaction:
                raise StorageError(f"{backend.path}: write transactions cannot be nested")
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise backend._storage_error("take the writer lock", exc) from exc
            try:
                head = head_of(connection.execute(SELECT_LAST).fetchone(), backend.path)
            except sqlite3.Error as exc:
                backend._roll_back(connection)
                raise backend._storage_error("read the head", exc) from exc
            except BaseException:
                backend._roll_back(connection)
                raise
        except BaseException:
            backend._write_lock.release()
            raise
        self._connection = connection
        self.head = head
        self._length = self.head.length
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        backend = self._backend
        connection = self._connection
        try:
            if exc_type is not None:
                backend._roll_back(connection)
                return
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as commit_error:
                backend._roll_back(connection)
                raise backend._storage_error("commit", commit_error) from commit_error
        finally:
            backend._write_lock.release()

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        try:
            row = self._connection.execute(_FIND_ONE, (event_id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._backend._storage_error("look up an event id", exc) from exc
        return None if row is None else int(row[0])

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offset of each event id (``None`` for one not in the log), in the same order:
        one query per :data:`FIND_CHUNK` ids instead of one per id."""
        try:
            found = _find_many(self._connection, event_ids)
        except sqlite3.Error as exc:
            raise self._backend._storage_error("look up event ids", exc) from exc
        return [found.get(event_id) for event_id in event_ids]

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream``, those staged in this transaction included."""
        try:
            return _count_stream(self._connection, stream, self._length, self._block)
        except sqlite3.Error as exc:
            raise self._backend._storage_error("count a stream", exc) from exc

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Insert records that continue the head; they become visible at commit."""
        if not self._insert(records):
            raise StorageError(
                f"{self._backend.path}: {self._duplicate(records)}; none of records "
                f"{records[0].offset}..{records[-1].offset} was appended"
            )

    def _duplicate(self, records: Sequence[StoredRecord]) -> str:
        """Which record's event id the unique index refused, and why."""
        known = self.find_many([record.event_id for record in records])
        seen: dict[bytes, int] = {}
        for record, offset in zip(records, known, strict=True):
            if offset is None:
                offset = seen.setdefault(record.event_id, record.offset)
                if offset == record.offset:
                    continue
            return (
                f"record {record.offset}: event id 0x{record.event_id.hex()} is already at "
                f"offset {offset} (event ids are unique)"
            )
        raise AssertionError("the unique index refused new ids")  # pragma: no cover

    def append_unless_known(self, records: Sequence[StoredRecord]) -> bool:
        """Insert records that continue the head and return True; or, when an event id
        among them is already in the log, insert none of them and return False.

        The unique index on ``event_id`` decides, so the store need not look the ids up
        before every append (ADR 0022).
        """
        return self._insert(records)

    def _insert(self, records: Sequence[StoredRecord]) -> bool:
        if not records:
            return True
        rows = self._rows(records)
        start = self._length
        end = start + len(rows)
        connection = self._connection
        try:
            try:
                if len(rows) == 1:
                    connection.execute(_INSERT_EVENT, rows[0])
                else:
                    connection.executemany(_INSERT_EVENT, rows)
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_UNIQUE":
                    raise
                # The rows before the duplicate went in: take them out again.
                connection.execute(_DELETE_FROM, (start,))
                return False
            block = self._block
            if end // block > start // block:
                self._index(start - start % block, end - end % block)
        except sqlite3.Error as exc:
            raise self._backend._storage_error("append records", exc) from exc
        self._length = end
        return True

    def _rows(self, records: Sequence[StoredRecord]) -> list[tuple[Any, ...]]:
        """The ``events`` rows of ``records``, which must continue the log."""
        next_offset = self._length
        rows: list[tuple[Any, ...]] = []
        dumps = orjson.dumps
        for record in records:
            offset = record.offset
            if offset != next_offset:
                raise StorageError(
                    f"{self._backend.path}: record offset {offset} does not continue "
                    f"the log (next offset is {next_offset})"
                )
            next_offset += 1
            streams = record.streams
            if len(streams) == 1:
                first: str | None = streams[0]
                more = ""
            elif streams:
                first = streams[0]
                more = dumps(streams[1:]).decode()
            else:
                first = None
                more = ""
            rows.append(
                (
                    offset,
                    record.event_id,
                    record.event_type,
                    more,
                    record.payload,
                    record.chain_hash,
                    first,
                )
            )
        return rows

    def _index(self, start: int, stop: int) -> None:
        """Enter positions ``[start, stop)``, whole blocks, in the streams index."""
        connection = self._connection
        connection.execute(_INDEX_FIRST_STREAMS, (start, stop))
        rows = connection.execute(_SELECT_MORE_STREAMS, (start, stop)).fetchall()
        if not rows:
            return
        more = [
            (stream, position)
            for position, first, streams in rows
            for stream in _more_streams(position, streams)
            if stream != first
        ]
        connection.executemany(_INSERT_STREAM, more)


def _find_many(connection: sqlite3.Connection, event_ids: Sequence[bytes]) -> dict[bytes, int]:
    """``{event id: offset}`` for those of ``event_ids`` in the log, through ``connection``.

    Each chunk is padded (by repeating an id, which changes nothing in ``IN``) to one of a
    few sizes, so a handful of statement texts cover every batch and SQLite's statement
    cache keeps them prepared.
    """
    found: dict[bytes, int] = {}
    for start in range(0, len(event_ids), FIND_CHUNK):
        chunk = list(event_ids[start : start + FIND_CHUNK])
        size = _FIND_SIZES[bisect.bisect_left(_FIND_SIZES, len(chunk))]
        chunk.extend([chunk[0]] * (size - len(chunk)))
        found.update(connection.execute(_FIND_IN[size], chunk).fetchall())
    return found


class SqliteBackend:
    """A chanlog log in an SQLite file (WAL), shareable by several processes.

    Args:
        path: the database file; created (atomically) when it does not exist. An existing
            file must be a chanlog database of a schema version this chanlog reads, or
            :class:`StorageError` is raised before anything is written to it.
        durability: ``"full"`` (fsync per commit, the default) or ``"normal"``.
        timeout: seconds to wait for the writer lock held by another process.
        poll_interval: seconds between checks for other processes' appends in :meth:`wait`.

    Raises:
        ConfigError: an unknown or ill-typed option.
        StorageError: the file cannot be created, or is not a usable chanlog database.
    """

    name = "sqlite"
    shared = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: str = "full",
        timeout: float = 30.0,
        poll_interval: float = 0.05,
        **unknown: Any,
    ) -> None:
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"sqlite backend: unknown option {key!r} (options: path, durability, timeout, "
                "poll_interval)",
                key=f"backend.{key}",
            )
        self.path = self._check_path(path)
        self.durability = self._check_durability(durability)
        self.timeout = self._check_seconds("timeout", timeout)
        self.poll_interval = self._check_seconds("poll_interval", poll_interval)
        self._write_lock = threading.RLock()
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._closing = threading.Event()
        self._closed = False
        if self.path.is_dir():
            raise StorageError(f"{self.path}: is a directory, not a chanlog database file")
        if not self.path.exists():
            create_database(self.path)
        else:
            check_existing(self.path)
        self._writer = self._connect(writer=True)
        try:
            upgrade(self._writer, self.path)
            self._block: int = self._guard(
                "read the format", lambda: stream_index_block(self._writer, self.path)
            )
        except BaseException:
            self._writer.close()
            raise

    # -- options -------------------------------------------------------------------------

    @staticmethod
    def _check_path(path: object) -> Path:
        if path is None:
            raise ConfigError("sqlite backend: the option 'path' is required", key="backend.path")
        if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
            raise ConfigError(
                f"sqlite backend: path must be a string or path, got {type(path).__name__}",
                key="backend.path",
            )
        text = os.fspath(path)
        if isinstance(text, str) and ("\x00" in text or not _encodable_path(text)):
            raise ConfigError(
                f"sqlite backend: path {text!r} is no file name this system can have "
                "(a NUL byte, or text that does not encode)",
                key="backend.path",
            )
        if not isinstance(text, str) or not text or text == ":memory:" or text.startswith("file:"):
            raise ConfigError(
                f"sqlite backend: path must name a file, got {text!r} (use the memory backend "
                "for a log without a file)",
                key="backend.path",
            )
        return Path(text)

    @staticmethod
    def _check_durability(durability: object) -> str:
        if not isinstance(durability, str) or durability not in DURABILITY_LEVELS:
            raise ConfigError(
                f"sqlite backend: durability must be 'full' or 'normal', got {durability!r}",
                key="backend.durability",
            )
        return durability

    @staticmethod
    def _check_seconds(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(
                f"sqlite backend: {name} must be a positive number of seconds, got {value!r}",
                key=f"backend.{name}",
            )
        return float(value)

    # -- connections ---------------------------------------------------------------------

    def _connect(self, *, writer: bool) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open: {exc}") from exc
        try:
            if writer:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StorageError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
                connection.execute(f"PRAGMA synchronous = {DURABILITY_LEVELS[self.durability]}")
                connection.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
                connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            else:
                connection.execute("PRAGMA query_only = 1")
        except BaseException as exc:
            connection.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"{self.path}: cannot open: {exc}") from exc
            raise
        return connection

    def _guard(self, action: str, operation: Any) -> Any:
        """Run ``operation()``, turning SQLite failures into :class:`StorageError`."""
        try:
            return operation()
        except sqlite3.Error as exc:
            raise self._storage_error(action, exc) from exc

    def _storage_error(self, action: str, exc: sqlite3.Error) -> StorageError:
        """The :class:`StorageError` for an SQLite failure while doing ``action``."""
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            return StorageError(
                f"{self.path}: cannot {action}: the database stayed locked by another "
                f"connection for more than {self.timeout:g} s ({exc})"
            )
        return StorageError(f"{self.path}: cannot {action}: {exc}")

    def _roll_back(self, connection: sqlite3.Connection) -> None:
        # The original error is what the caller needs to see; a failing rollback (SQLite
        # may already have rolled back on its own) must not replace it.
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    def _query(self, action: str, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Run one read query on a pooled read-only connection; return every row."""
        return self._with_reader(
            action, lambda connection: connection.execute(sql, parameters).fetchall()
        )

    def _with_reader(self, action: str, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation(connection)`` on a pooled read-only connection (autocommit: each
        statement sees the latest commit, which for an append-only log only ever adds)."""
        with self._pool_lock:
            if self._closed:
                raise StorageError(f"{self.path}: the backend is closed")
            connection = self._idle_readers.pop() if self._idle_readers else None
        if connection is None:
            connection = self._connect(writer=False)
        try:
            result: _T = self._guard(action, lambda: operation(connection))
        finally:
            with self._pool_lock:
                if self._closed or len(self._idle_readers) >= _MAX_IDLE_READERS:
                    connection.close()
                else:
                    self._idle_readers.append(connection)
        return result

    # -- the Backend protocol ------------------------------------------------------------

    def head(self) -> Head:
        """The current head, as committed by any process: read from the last record."""
        rows = self._query("read the head", SELECT_LAST, ())
        return head_of(rows[0] if rows else None, self.path)

    def write(self) -> _SqliteTransaction:
        """A write session: entering it takes the writer lock (this process's threads, then
        ``BEGIN IMMEDIATE`` for other processes) and reads the head; leaving it commits, or
        rolls back when the block raised."""
        return _SqliteTransaction(self)

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        """Records with ``start <= offset < end`` in order, fetched :data:`READ_CHUNK` rows
        at a time (no lock or cursor is held between chunks)."""
        position = max(start, 0)
        end = min(end, _MAX_POSITION)
        while position < end:
            rows = self._query(
                "read records",
                _SELECT_RECORD + " WHERE position >= ? AND position < ? ORDER BY position LIMIT ?",
                (position, end, READ_CHUNK),
            )
            for row in rows:
                yield _record(row)
            if len(rows) < READ_CHUNK:
                return
            position = rows[-1][0] + 1

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        """Records of ``stream`` with ``start <= offset < end`` in order, as committed when
        the iteration starts, chunked like :meth:`read`: the stream's index rows, then the
        few records after the last indexed block (fewer than its ``stream_index_block``)."""
        position = max(start, 0)
        stop = _MAX_POSITION if end is None else min(end, _MAX_POSITION)
        if position >= stop:
            return
        length = self.head().length
        stop = min(stop, length)
        indexed = min(stop, length - length % self._block)
        while position < indexed:
            rows = self._query(
                "read a stream", _READ_INDEXED, (stream, position, indexed, READ_CHUNK)
            )
            for row in rows:
                yield _record(row)
            if len(rows) < READ_CHUNK:
                break
            position = rows[-1][0] + 1
        position = max(position, indexed)
        if position < stop:
            for row in self._query("read a stream", _READ_TAIL, (position, stop, stream)):
                if _in_stream(stream, row[6], row[3]):
                    yield _record(row)

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        rows = self._query("look up an event id", _FIND_ONE, (event_id,))
        return int(rows[0][0]) if rows else None

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offset of each event id (``None`` for one not in the log), in the same order,
        with one query per :data:`FIND_CHUNK` ids."""
        found = self._with_reader(
            "look up event ids", lambda connection: _find_many(connection, event_ids)
        )
        return [found.get(event_id) for event_id in event_ids]

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream``."""
        block = self._block

        def count(connection: sqlite3.Connection) -> int:
            # Each statement may see a later commit than the one before; all of them count
            # as of the head read first, which later commits only ever extend.
            length = head_of(connection.execute(SELECT_LAST).fetchone(), self.path).length
            return _count_stream(connection, stream, length, block)

        return self._with_reader("count a stream", count)

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store a snapshot, replacing one at the same offset. Called inside :meth:`write`
        on the same thread, it becomes part of that transaction."""
        row = (
            snapshot.offset,
            orjson.dumps(snapshot.versions, option=orjson.OPT_SORT_KEYS).decode(),
            snapshot.data,
            snapshot.snapshot_hash,
        )
        sql = (
            "INSERT OR REPLACE INTO snapshots (position, versions, data, snapshot_hash)"
            " VALUES (?, ?, ?, ?)"
        )
        with self._write_lock:
            if self._closed:
                raise StorageError(f"{self.path}: the backend is closed")
            connection = self._writer
            if connection.in_transaction:
                self._guard("save a snapshot", lambda: connection.execute(sql, row))
                return
            self._guard("take the writer lock", lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                self._guard("save a snapshot", lambda: connection.execute(sql, row))
                self._guard("commit", lambda: connection.execute("COMMIT"))
            except BaseException:
                self._roll_back(connection)
                raise

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        """The snapshot with the greatest offset ``<= before`` (any, when ``None``)."""
        limit = _MAX_POSITION if before is None else min(before, _MAX_POSITION)
        rows = self._query(
            "read a snapshot",
            "SELECT position, versions, data, snapshot_hash FROM snapshots"
            " WHERE position <= ? ORDER BY position DESC LIMIT 1",
            (limit,),
        )
        if not rows:
            return None
        position, versions, data, snapshot_hash = rows[0]
        try:
            decoded = orjson.loads(versions)
        except orjson.JSONDecodeError as exc:
            raise StorageError(
                f"{self.path}: snapshot at offset {position} has unreadable versions: {exc}"
            ) from exc
        if (
            type(decoded) is not dict
            or not all(type(v) is int for v in decoded.values())
            or type(data) is not bytes
            or type(snapshot_hash) is not bytes
        ):
            raise StorageError(
                f"{self.path}: damaged snapshot at offset {position}: its versions, data or "
                "hash do not have the types chanlog writes (changed outside chanlog)"
            )
        return StoredSnapshot(position, decoded, data, snapshot_hash)

    def wait(self, length: int, timeout: float) -> bool:
        """Block until the log is longer than ``length`` or ``timeout`` seconds pass.

        The head is polled every ``poll_interval`` seconds, whoever appends: the store
        announces the appends it makes itself, so a commit does not also wake the waiters
        (ADR 0018). :meth:`close` wakes them at once.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.head().length > length:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closing.wait(min(self.poll_interval, remaining))

    def close(self) -> None:
        """Close every connection (the last one to close folds the WAL into the file).
        Idempotent; waits for a write in progress on another thread to finish."""
        with self._write_lock:
            with self._pool_lock:
                if self._closed:
                    return
                self._closed = True
                idle, self._idle_readers = self._idle_readers, []
            for connection in idle:
                connection.close()
            self._writer.close()
        self._closing.set()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def __repr__(self) -> str:
        return f"<SqliteBackend path={str(self.path)!r} durability={self.durability!r}>"
