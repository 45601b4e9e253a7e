"""The ``sqlite`` backend: a durable log in one SQLite file, safe to share between processes.

Configuration (keyword options, ``[backend]`` in chanlog.toml)::

    SqliteBackend(path="node.db", durability="full", timeout=30.0, poll_interval=0.05,
                  read_only=False, create=True)

- ``durability = "full"`` (default): ``synchronous = FULL``, the write-ahead log is fsync'd at
  every commit, so an acknowledged append survives power loss. ``"normal"``:
  ``synchronous = NORMAL``, an acknowledged append survives a crash of the process (not of the
  machine) and commits cost no fsync; the write-ahead log is synced before the head is
  remembered (after a snapshot, at close), so a power loss of the last commits is never taken
  for records cut from the log.
- ``timeout``: seconds a writer waits for another process to release the writer lock before
  :class:`~chanlog.errors.StorageError`.
- ``poll_interval``: how often :meth:`SqliteBackend.wait` looks for appends (the store
  announces its own appends; this is how it learns of other processes' appends).
- ``read_only``: open an existing file for reading only (``mode=ro``): it is never created
  or upgraded, and every write is refused with :class:`~chanlog.errors.StorageError`. Where
  no file may be created beside it (a read-only directory or medium), a file without a
  write-ahead log is read as it is (ADR 0039).
- ``create``: with ``False``, a missing file is a :class:`~chanlog.errors.NotFound`
  naming it instead of a new, empty log.

Several processes may open one file (ADR 0010). :meth:`SqliteBackend.write` starts with
``BEGIN IMMEDIATE``, which takes SQLite's writer lock across processes, and reads the head
(the last record) inside it, so offsets stay dense and in commit order whoever appends.
Readers never block the writer (WAL). Reads fetch bounded chunks through a small pool of
read-only connections, so a large read never holds a lock or the whole log in memory, and
many threads can read at once.

The backend is a façade over modules with one job each: options and pragmas
(:mod:`~chanlog.backends.sqlite_options`), connections
(:mod:`~chanlog.backends.sqlite_connections`), the write transaction
(:mod:`~chanlog.backends.sqlite_transaction`), SQL (:mod:`~chanlog.backends.sqlite_queries`),
row decoding (:mod:`~chanlog.backends.sqlite_rows`), the file format and its life
(:mod:`~chanlog.backends.sqlite_format`, :mod:`~chanlog.backends.sqlite_schema`, ADRs 0011,
0018 and 0027; a file of an older schema version is upgraded when a writer opens it), the
raw-bytes and write-ahead-log checks (:mod:`~chanlog.backends.sqlite_wal`, ADR 0023), the
head witness (:mod:`~chanlog.backends.head_file`) and durable consumers
(:mod:`~chanlog.backends.sqlite_consumers`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from chanlog.backends import sqlite_queries as queries
from chanlog.backends.consumer_store import KeepsConsumersThrough
from chanlog.backends.files import fsync_file
from chanlog.backends.head_file import HeadFile
from chanlog.backends.sqlite_connections import SqliteConnections
from chanlog.backends.sqlite_consumers import SqliteConsumers
from chanlog.backends.sqlite_format import SCHEMA_VERSION
from chanlog.backends.sqlite_meta import SERIALIZER, meta_value, record_meta
from chanlog.backends.sqlite_options import (
    DURABILITY_LEVELS,
    WAL_AUTOCHECKPOINT_PAGES,
    WRITER_CACHE_KIB,
    SqliteOptions,
)
from chanlog.backends.sqlite_queries import FIND_CHUNK, MAX_POSITION
from chanlog.backends.sqlite_rows import (
    head_of,
    in_stream,
    index_pair_of,
    payload_of,
    record_of,
    snapshot_of,
    snapshot_row,
    streams_of,
)
from chanlog.backends.sqlite_schema import (
    prepare_file,
    require_readable,
    stream_index_block,
    upgrade,
)
from chanlog.backends.sqlite_transaction import SqliteTransaction
from chanlog.errors import ChanlogError, InvalidArgument, StorageError
from chanlog.records import (
    Head,
    StoredRecord,
    StoredSnapshot,
)

__all__ = [
    "DURABILITY_LEVELS",
    "FIND_CHUNK",
    "READ_CHUNK",
    "WAL_AUTOCHECKPOINT_PAGES",
    "WRITER_CACHE_KIB",
    "SqliteBackend",
]

READ_CHUNK = 512
"""Rows fetched per query by streamed reads."""

logger = logging.getLogger("chanlog.backends.sqlite")


class SqliteBackend(KeepsConsumersThrough):
    """A chanlog log in an SQLite file (WAL), shareable by several processes.

    Besides the :class:`~chanlog.backends.base.Backend` protocol it implements the
    capabilities :class:`~chanlog.backends.capabilities.ReadsStreamPayloads`,
    :class:`~chanlog.backends.capabilities.ExposesStreamIndex`,
    :class:`~chanlog.backends.capabilities.RemembersHead`,
    :class:`~chanlog.backends.capabilities.FileBacked`,
    :class:`~chanlog.backends.capabilities.MayBeReadOnly`,
    :class:`~chanlog.backends.consumer_store.KeepsConsumers`,
    :class:`~chanlog.backends.capabilities.RecordsSerializer`, and :meth:`find_many`; its
    transactions are :class:`~chanlog.backends.sqlite_transaction.SqliteTransaction`.

    Args:
        path: the database file; created (atomically) when it does not exist. An existing
            file must be a chanlog database of a schema version this chanlog reads, or
            :class:`StorageError` is raised before anything is written to it.
        durability: ``"full"`` (fsync per commit, the default) or ``"normal"``.
        timeout: seconds to wait for the writer lock held by another process.
        poll_interval: seconds between checks for other processes' appends in :meth:`wait`.
        read_only: open the existing file for reading only; writes raise
            :class:`StorageError`, and the file is never created nor upgraded.
        create: with ``False`` a missing file is a :class:`~chanlog.errors.NotFound`
            (``read_only`` implies it).

    Raises:
        ConfigError: an unknown or ill-typed option.
        NotFound: the file is missing (``read_only`` or ``create=False``).
        StorageError: the file cannot be created, or is not a usable chanlog database.
    """

    name = "sqlite"
    shared = True
    groups_commits = True  # a commit writes the WAL (and fsyncs it): group concurrent appends

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        durability: str = "full",
        timeout: float = 30.0,
        poll_interval: float = 0.05,
        read_only: bool = False,
        create: bool = True,
        **unknown: Any,
    ) -> None:
        options = SqliteOptions.parse(
            path,
            unknown,
            durability=durability,
            timeout=timeout,
            poll_interval=poll_interval,
            read_only=read_only,
            create=create,
        )
        self.options = options
        """The checked options."""
        self.path = options.path
        """The database file."""
        self.durability = options.durability
        self.timeout = options.timeout
        self.poll_interval = options.poll_interval
        self._closing = threading.Event()
        self._head_file = HeadFile(self.path)
        prepare_file(options.path, read_only=options.read_only, create=options.create)
        self._connections = SqliteConnections(options)
        try:
            self._block, version = self._open_format()
        except BaseException:
            self._connections.close()
            raise
        self.consumer_table = SqliteConsumers(self._connections, tables=version == SCHEMA_VERSION)

    def _open_format(self) -> tuple[int, int]:
        """Bring the file to the current schema version (a writer) or refuse one a reader
        cannot read as it is (read-only); return its ``stream_index_block`` and version."""
        path = self.path
        connections = self._connections
        if self.read_only:

            def check(connection: sqlite3.Connection) -> tuple[int, int]:
                version = require_readable(connection, path)
                return stream_index_block(connection, path), version

            return connections.with_reader("read the format", check)
        writer = connections.writer
        upgrade(writer, path)
        block = connections.guard("read the format", lambda: stream_index_block(writer, path))
        return block, SCHEMA_VERSION

    @property
    def read_only(self) -> bool:
        """True when this handle was opened with ``read_only=True`` and refuses writes."""
        return self.options.read_only

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._connections.closed

    # -- the Backend protocol ------------------------------------------------------------

    def head(self) -> Head:
        """The current head, as committed by any process: read from the last record."""
        rows = self._connections.query("read the head", queries.SELECT_LAST, ())
        return head_of(rows[0] if rows else None, self.path)

    def write(self) -> SqliteTransaction:
        """A write session: entering it takes the writer lock (this process's threads, then
        ``BEGIN IMMEDIATE`` for other processes) and reads the head; leaving it commits, or
        rolls back when the block raised. Entering it on a read-only or closed backend
        raises :class:`StorageError`."""
        return SqliteTransaction(self._connections, self._block)

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        """Records with ``start <= offset < end`` in order, fetched :data:`READ_CHUNK` rows
        at a time (no lock or cursor is held between chunks)."""
        position = max(start, 0)
        end = min(end, MAX_POSITION)
        while position < end:
            rows = self._connections.query(
                "read records", queries.READ_RANGE, (position, end, READ_CHUNK)
            )
            for row in rows:
                yield record_of(row)
            if len(rows) < READ_CHUNK:
                return
            position = rows[-1][0] + 1

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        """Records of ``stream`` with ``start <= offset < end`` in order, as committed when
        the iteration starts, chunked like :meth:`read`: the stream's index rows, then the
        few records after the last indexed block (fewer than its ``stream_index_block``)."""
        rows = self._stream_rows(
            stream, start, end, queries.READ_INDEXED, queries.READ_TAIL, (6, 3)
        )
        for row in rows:
            yield record_of(row)

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """``(offset, event_type, payload)`` of the records :meth:`read_stream` yields: the
        lean path reconstruction folds over (no record object, no chain-hash copy)."""
        rows = self._stream_rows(
            stream, start, end, queries.READ_INDEXED_PAYLOADS, queries.READ_TAIL_PAYLOADS, (3, 4)
        )
        for row in rows:
            yield payload_of(row)

    def _stream_rows(
        self,
        stream: str,
        start: int,
        end: int | None,
        indexed_sql: str,
        tail_sql: str,
        stream_columns: tuple[int, int],
    ) -> Iterator[tuple[Any, ...]]:
        """The rows of ``stream`` in ``[start, end)``: from the index below the last whole
        block (``indexed_sql``), then the candidates of the tail (``tail_sql``) that belong
        to it, judged by their ``stream`` and ``streams`` columns (at ``stream_columns``)."""
        position = max(start, 0)
        stop = MAX_POSITION if end is None else min(end, MAX_POSITION)
        if position >= stop:
            return
        length = self.head().length
        stop = min(stop, length)
        indexed = min(stop, length - length % self._block)
        query = self._connections.query
        while position < indexed:
            rows = query("read a stream", indexed_sql, (stream, position, indexed, READ_CHUNK))
            yield from rows
            if len(rows) < READ_CHUNK:
                break
            position = rows[-1][0] + 1
        position = max(position, indexed)
        first, more = stream_columns
        if position < stop:
            for row in query("read a stream", tail_sql, (position, stop, stream)):
                if in_stream(stream, row[first], row[more]):
                    yield row

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        rows = self._connections.query("look up an event id", queries.FIND_ONE, (event_id,))
        return int(rows[0][0]) if rows else None

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offset of each event id (``None`` for one not in the log), in the same order,
        with one query per :data:`FIND_CHUNK` ids."""
        found = self._connections.with_reader(
            "look up event ids", lambda connection: queries.find_many(connection, event_ids)
        )
        return [found.get(event_id) for event_id in event_ids]

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream``."""
        block = self._block

        def count(connection: sqlite3.Connection) -> int:
            # Each statement may see a later commit than the one before; all of them count
            # as of the head read first, which later commits only ever extend.
            length = head_of(connection.execute(queries.SELECT_LAST).fetchone(), self.path).length
            return queries.count_stream(connection, stream, length, block)

        return self._connections.with_reader("count a stream", count)

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store a snapshot, replacing one at the same offset. Called inside :meth:`write`
        on the same thread, it becomes part of that transaction (as
        :meth:`SqliteTransaction.save_snapshot
        <chanlog.backends.sqlite_transaction.SqliteTransaction.save_snapshot>` does)."""
        row = snapshot_row(snapshot)
        self._connections.write(
            "save a snapshot", lambda connection: connection.execute(queries.SAVE_SNAPSHOT, row)
        )

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        """The snapshot with the greatest offset ``<= before`` (any, when ``None``)."""
        limit = MAX_POSITION if before is None else min(before, MAX_POSITION)
        rows = self._connections.query("read a snapshot", queries.LATEST_SNAPSHOT, (limit,))
        return snapshot_of(rows[0], self.path) if rows else None

    def snapshot_sizes(self) -> list[tuple[int, int]]:
        """``(offset, bytes)`` of every stored snapshot, by offset (ManagesSnapshots)."""
        rows = self._connections.query("list snapshots", queries.SNAPSHOT_SIZES, ())
        return [(int(offset), int(size)) for offset, size in rows]

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` in one transaction; return how many there
        were. Their pages are reused by later snapshots (the file does not shrink)."""
        with self.write() as transaction:  # refuses a closed or read-only backend
            return transaction.delete_snapshots(offsets)

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
        """Remember the head (see :meth:`remember_head`), then close every connection (the
        last one to close folds the WAL into the file). Idempotent; waits for a write in
        progress on another thread to finish."""
        connections = self._connections
        with connections.write_lock:
            if connections.closed:
                return
            try:
                if not self.read_only:
                    self._remember_at_close()
            finally:
                connections.close()
        self._closing.set()

    # -- capabilities --------------------------------------------------------------------

    def stream_index(self) -> Iterator[tuple[str, int]]:
        """Every ``(stream, offset)`` pair the stream reads rely on, for the records
        committed when the iteration starts, ordered by offset then stream: the ``streams``
        table below the last whole index block, then the streams of the tail rows after it
        (which :meth:`read_stream` reads from the rows themselves).

        One pooled connection is held, and one read snapshot open, until the iteration ends
        (the table is sorted by offset once, in SQLite's temporary storage).

        Raises:
            IntegrityError: an index or tail row does not have the types chanlog writes.
        """
        length = self.head().length
        indexed = length - length % self._block
        with self._connections.reader() as connection:
            try:
                cursor = connection.execute(queries.STREAM_INDEX, (indexed,))
                while rows := cursor.fetchmany(READ_CHUNK):
                    for row in rows:
                        yield index_pair_of(row)
                tail = connection.execute(queries.TAIL_STREAMS, (indexed, length)).fetchall()
            except sqlite3.Error as exc:
                raise self._connections.storage_error("read the stream index", exc) from exc
        for position, first, more in tail:
            for stream in sorted(streams_of(position, first, more)):
                yield stream, position

    def recorded_serializer(self) -> str | None:
        """The serializer recorded in the file (the ``serializer`` row of ``chanlog_meta``),
        or ``None`` for a log written before chanlog recorded it.

        Raises:
            StorageError: the row is not text.
        """
        return self._connections.with_reader(
            "read the serializer", lambda connection: meta_value(connection, self.path, SERIALIZER)
        )

    def record_serializer(self, name: str) -> str:
        """Record ``name`` unless the file records a serializer; return the recorded one.

        Raises:
            StorageError: the backend is read-only, or SQLite failed.
        """
        return self._connections.write(
            "record the serializer",
            lambda connection: record_meta(connection, self.path, SERIALIZER, name),
        )

    def remembered_head(self) -> Head | None:
        """The head the ``<database>-head`` witness file remembers (see
        :mod:`chanlog.backends.head_file`), or ``None`` when there is no such file.

        Raises:
            IntegrityError: the witness file is damaged; the message names it.
        """
        return self._head_file.read()

    def remember_head(self, head: Head) -> None:
        """Write ``head`` to the witness file, atomically and durably, replacing what it
        held (even a longer head: this is the caller's decision). :meth:`close` also
        remembers the log's head, but only one that extends the remembered head: a log
        found cut short keeps its evidence.

        Raises:
            InvalidArgument: ``head`` is not a length >= 0 and a 32-byte chain hash.
            StorageError: the backend is read-only, or the file cannot be written.
        """
        if (
            type(head.length) is not int
            or head.length < 0
            or type(head.chain_hash) is not bytes
            or len(head.chain_hash) != 32
        ):
            raise InvalidArgument(f"not a head: {head!r}")
        if self.read_only:
            raise StorageError(f"{self.path}: opened read-only; writes are refused")
        self._write_witness(head)

    def _write_witness(self, head: Head) -> None:
        """Write the witness of ``head``, after syncing the write-ahead log when commits are
        not synced one by one (``durability = "normal"``): a witness must never remember
        commits a power cut may take, or verify would report that documented loss of the
        last commits as records cut from the log."""
        if self.durability != "full":
            try:
                fsync_file(Path(f"{self.path}-wal"))
            except OSError as exc:
                raise StorageError(f"{self.path}: cannot sync the write-ahead log: {exc}") from exc
        self._head_file.write(head)

    def _remember_at_close(self) -> None:
        """Remember the head at close when it extends the remembered one. Problems are
        logged, not raised: closing must release the file whatever the witness holds."""
        writer = self._connections.writer
        if writer.in_transaction:  # close() called inside this thread's own write
            return
        try:
            head = head_of(writer.execute(queries.SELECT_LAST).fetchone(), self.path)
            if head.length == 0:
                return  # nothing to witness: an empty log cannot be cut
            remembered = self._head_file.read()
            if remembered == head:
                return
            if remembered is not None and not self._extends(writer, remembered, head):
                logger.warning(
                    "%s: the log (%d records) does not extend the head its witness "
                    "remembers (%d records); the witness is kept as evidence",
                    self.path,
                    head.length,
                    remembered.length,
                )
                return
            self._write_witness(head)
        except (ChanlogError, sqlite3.Error) as exc:
            logger.warning("%s: the head was not remembered at close: %s", self.path, exc)

    @staticmethod
    def _extends(writer: sqlite3.Connection, remembered: Head, head: Head) -> bool:
        """Whether the log ending at ``head`` holds ``remembered`` as a prefix."""
        if remembered.length == 0:
            return True
        if head.length < remembered.length:
            return False
        row = writer.execute(queries.CHAIN_AT, (remembered.length - 1,)).fetchone()
        return row is not None and row[0] == remembered.chain_hash

    def __repr__(self) -> str:
        mode = " read_only" if self.read_only else ""
        return f"<SqliteBackend path={str(self.path)!r} durability={self.durability!r}{mode}>"
