"""The ``sqlite`` backend: a durable log in one SQLite file, safe to share between processes.

Configuration (keyword options, ``[backend]`` in chanlog.toml)::

    SqliteBackend(path="node.db", durability="full", timeout=30.0, poll_interval=0.05)

- ``durability = "full"`` (default): ``synchronous = FULL``, the write-ahead log is fsync'd at
  every commit, so an acknowledged append survives power loss. ``"normal"``:
  ``synchronous = NORMAL``, an acknowledged append survives a crash of the process (not of the
  machine) and commits cost no fsync.
- ``timeout``: seconds a writer waits for another process to release the writer lock before
  :class:`~chanlog.errors.StorageError`.
- ``poll_interval``: how often :meth:`SqliteBackend.wait` looks for appends made by other
  processes (appends made through this backend object wake waiters at once).

Several processes may open one file (ADR 0010). :meth:`SqliteBackend.write` starts with
``BEGIN IMMEDIATE``, which takes SQLite's writer lock across processes, and reads the head
inside it, so offsets stay dense and in commit order whoever appends. Readers never block the
writer (WAL). Reads fetch bounded chunks through a small pool of read-only connections, so a
large read never holds a lock or the whole log in memory, and many threads can read at once.
The file format and how bad files are refused are described in
:mod:`chanlog.backends.sqlite_schema` (ADR 0011).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson

from chanlog.backends.sqlite_schema import check_existing, create_database
from chanlog.errors import ConfigError, StorageError
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

_SELECT_RECORD = "SELECT position, event_id, event_type, streams, payload, chain_hash FROM events"
_SELECT_HEAD = "SELECT length, chain_hash FROM head WHERE id = 0"
_UPDATE_HEAD = "UPDATE head SET length = ?, chain_hash = ? WHERE id = 0"
_FIND_ONE = "SELECT position FROM events WHERE event_id = ?"
_COUNT_STREAM = "SELECT count(*) FROM streams WHERE stream = ?"
_INSERT_EVENT = (
    "INSERT INTO events (position, event_id, event_type, streams, payload, chain_hash)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_STREAM = "INSERT OR IGNORE INTO streams (stream, position) VALUES (?, ?)"
_FIND_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, FIND_CHUNK)
_FIND_IN = {
    size: "SELECT event_id, position FROM events WHERE event_id IN (" + ", ".join("?" * size) + ")"
    for size in _FIND_SIZES
}


def _record(row: tuple[Any, ...]) -> StoredRecord:
    position, event_id, event_type, streams, payload, chain_hash = row
    return StoredRecord(
        position, event_id, event_type, tuple(orjson.loads(streams)), payload, chain_hash
    )


class _SqliteTransaction:
    """The write session :meth:`SqliteBackend.write` yields; holds ``BEGIN IMMEDIATE``.

    The store calls these methods once per event or per batch, so they talk to SQLite
    directly (no closures, statements cached by their text) and wrap only the failures.
    """

    __slots__ = ("_backend", "_chain", "_connection", "_length", "head")

    def __init__(self, backend: SqliteBackend, connection: sqlite3.Connection) -> None:
        self._backend = backend
        self._connection = connection
        row = connection.execute(_SELECT_HEAD).fetchone()
        if row is None:
            raise StorageError(f"{backend.path}: damaged chanlog database (head row missing)")
        self.head = Head(row[0], row[1])
        self._length = self.head.length
        self._chain = self.head.chain_hash

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
        """How many committed records belong to ``stream``."""
        try:
            row = self._connection.execute(_COUNT_STREAM, (stream,)).fetchone()
        except sqlite3.Error as exc:
            raise self._backend._storage_error("count a stream", exc) from exc
        return int(row[0])

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Insert records that continue the head; they become visible at commit."""
        if not records:
            return
        rows, stream_rows = self._rows(records)
        try:
            self._connection.executemany(_INSERT_EVENT, rows)
            self._connection.executemany(_INSERT_STREAM, stream_rows)
        except sqlite3.Error as exc:
            raise self._backend._storage_error("append records", exc) from exc
        self._advance(records)

    def _rows(
        self, records: Sequence[StoredRecord]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
        """The ``events`` and ``streams`` rows of ``records``, which must continue the log."""
        next_offset = self._length
        rows: list[tuple[Any, ...]] = []
        stream_rows: list[tuple[str, int]] = []
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
            rows.append(
                (
                    offset,
                    record.event_id,
                    record.event_type,
                    dumps(streams).decode(),
                    record.payload,
                    record.chain_hash,
                )
            )
            stream_rows.extend([(stream, offset) for stream in streams])
        return rows, stream_rows

    def _advance(self, records: Sequence[StoredRecord]) -> None:
        self._length = records[-1].offset + 1
        self._chain = records[-1].chain_hash

    @property
    def appended(self) -> bool:
        """Whether this transaction staged any record."""
        return self._length != self.head.length

    def _update_head(self) -> None:
        # Once per transaction, whatever the number of append() calls in it.
        if self.appended:
            self._connection.execute(_UPDATE_HEAD, (self._length, self._chain))


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
        self._grew = threading.Condition(threading.Lock())
        self._closed = False
        if not self.path.exists():
            create_database(self.path)
        else:
            check_existing(self.path)
        self._writer = self._connect(writer=True)

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
        """The current head, as committed by any process."""
        rows = self._query("read the head", _SELECT_HEAD, ())
        if not rows:
            raise StorageError(f"{self.path}: damaged chanlog database (head row missing)")
        return Head(rows[0][0], rows[0][1])

    @contextmanager
    def write(self) -> Iterator[_SqliteTransaction]:
        """Take the writer lock (this process's threads, then ``BEGIN IMMEDIATE`` for other
        processes) and yield a transaction; commit on normal exit, roll back otherwise."""
        with self._write_lock:
            if self._closed:
                raise StorageError(f"{self.path}: the backend is closed")
            connection = self._writer
            if connection.in_transaction:
                raise StorageError(f"{self.path}: write transactions cannot be nested")
            self._guard("take the writer lock", lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                transaction: _SqliteTransaction = self._guard(
                    "read the head", lambda: _SqliteTransaction(self, connection)
                )
                yield transaction
                self._guard("update the head", transaction._update_head)
                self._guard("commit", lambda: connection.execute("COMMIT"))
            except BaseException:
                self._roll_back(connection)
                raise
        if transaction.appended:
            with self._grew:
                self._grew.notify_all()

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
        """Records of ``stream`` with ``start <= offset < end`` in order, chunked like
        :meth:`read`; only the stream's index rows and records are touched."""
        position = max(start, 0)
        stop = _MAX_POSITION if end is None else min(end, _MAX_POSITION)
        while position < stop:
            rows = self._query(
                "read a stream",
                "SELECT e.position, e.event_id, e.event_type, e.streams, e.payload, e.chain_hash"
                " FROM streams AS s JOIN events AS e ON e.position = s.position"
                " WHERE s.stream = ? AND s.position >= ? AND s.position < ?"
                " ORDER BY s.position LIMIT ?",
                (stream, position, stop, READ_CHUNK),
            )
            for row in rows:
                yield _record(row)
            if len(rows) < READ_CHUNK:
                return
            position = rows[-1][0] + 1

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
        rows = self._query("count a stream", _COUNT_STREAM, (stream,))
        return int(rows[0][0])

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
        return StoredSnapshot(position, decoded, data, snapshot_hash)

    def wait(self, length: int, timeout: float) -> bool:
        """Block until the log is longer than ``length`` or ``timeout`` seconds pass.

        Appends through this object wake the waiter at once; appends by other processes are
        seen by polling the head every ``poll_interval`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.head().length > length:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._grew:
                self._grew.wait(min(self.poll_interval, remaining))

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
        with self._grew:
            self._grew.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def __repr__(self) -> str:
        return f"<SqliteBackend path={str(self.path)!r} durability={self.durability!r}>"
