"""The ``postgres`` backend: one chanlog log shared by many processes and machines.

Configuration (keyword options, ``[backend]`` in chanlog.toml)::

    PostgresBackend(dsn="postgresql://user@127.0.0.1:5432/db", schema="chanlog", pool_size=4,
                    connect_timeout=5.0, lock_timeout=30.0, pool_timeout=10.0,
                    read_only=False, create=True)

How it keeps offsets dense and in commit order whoever appends (ADR 0012): a write transaction
starts by locking the single ``head`` row (``SELECT ... FOR UPDATE``) and reading the length
and last chain hash under that lock; the store computes the next offsets and chain hashes from
it, the records and the new head are written, and the commit releases the lock. Writers are
serialized by the row lock, so the transaction holding offset ``n`` has committed before any
transaction can even learn that ``n + 1`` is next: no gaps, no out-of-order visibility, and a
reader that has seen offset ``n`` will never later discover an older offset. Every append
transaction also runs ``pg_notify``, delivered at commit, which wakes :meth:`wait` in other
processes. The transaction itself is :class:`~chanlog_postgres.transaction.PostgresTransaction`.

Durable consumers (:class:`~chanlog.backends.consumer_store.KeepsConsumers`) are kept in
the same schema, with row locks and the server's clock
(:mod:`~chanlog_postgres.consumers`); a write transaction moves one with its records.

Reads use keyset pagination (``position >= next ORDER BY position LIMIT 512``), one pooled
connection per page, so a large read neither loads the log nor pins a connection while the
caller consumes it. Every failure surfaces as :class:`~chanlog.errors.StorageError` naming the
server and the schema; nothing waits forever (connect, pool and lock timeouts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from chanlog.backends.consumer_store import KeepsConsumersThrough
from chanlog.errors import ConfigError, StorageError
from chanlog.records import (
    Head,
    StoredRecord,
    StoredSnapshot,
)
from chanlog_postgres.connection import (
    connect,
    parse_dsn,
    read_committed,
    server_keepalives,
    storage_error,
)
from chanlog_postgres.consumers import PostgresConsumers
from chanlog_postgres.meta import SERIALIZER, meta_value, record_meta
from chanlog_postgres.options import (
    DURABILITY_LEVELS,
    OPTION_NAMES,
    check_durability,
    check_flag,
    check_pool_size,
    check_seconds,
)
from chanlog_postgres.pooling import open_pool, take
from chanlog_postgres.schema import (
    check_schema_name,
    ensure_schema,
    notify_channel,
    remove_schema,
)
from chanlog_postgres.statements import Statements
from chanlog_postgres.transaction import (
    COPY_THRESHOLD,
    PostgresTransaction,
    find_many,
    snapshot_params,
)

__all__ = [
    "COPY_THRESHOLD",
    "DEFAULT_SCHEMA",
    "DURABILITY_LEVELS",
    "READ_CHUNK",
    "PostgresBackend",
    "PostgresTransaction",
    "drop_schema",
]

DEFAULT_SCHEMA = "chanlog"
"""The schema a backend uses when none is configured."""

READ_CHUNK = 512
"""Rows fetched per query by streamed reads."""

_MAX_POSITION = 2**63 - 1  # bigint


def _record(row: tuple[Any, ...]) -> StoredRecord:
    position, event_id, event_type, streams, payload, chain_hash = row
    return StoredRecord(position, event_id, event_type, tuple(streams), payload, chain_hash)


class PostgresBackend(KeepsConsumersThrough):
    """A chanlog log in a PostgreSQL schema, shared by every process that opens it.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL (required).
        schema: the PostgreSQL schema holding the log (default ``"chanlog"``); created with
            its tables on first use. Several logs can live in one database under different
            schemas.
        durability: ``"full"`` (default): an acknowledged append is flushed to the server's
            write-ahead log before the commit returns (survives a server crash or power
            loss, as the server's own ``fsync`` settings allow). ``"normal"``:
            ``synchronous_commit = off`` for this backend's sessions: an acknowledged append
            survives the crash of any client process, but a server crash may lose the last
            fraction of a second of commits (never a torn or partial one; offsets stay dense).
        pool_size: the most connections this backend opens for reads and writes (>= 2: a
            writer folding other processes' records reads while it holds the write lock).
            :meth:`wait` uses one more, dedicated to LISTEN.
        connect_timeout: seconds to wait for the server when connecting.
        lock_timeout: seconds a writer waits for the writer lock held by another process
            before :class:`StorageError`.
        pool_timeout: seconds to wait for a free pooled connection.
        read_only: open an existing log for reading only: the schema is never created,
            the sessions are ``default_transaction_read_only``, and every write raises
            :class:`StorageError`.
        create: with ``False`` a schema holding no chanlog log is a
            :class:`~chanlog.errors.NotFound` naming it, instead of being created
            (``read_only`` implies it).

    Besides the :class:`~chanlog.backends.base.Backend` protocol it implements the
    capabilities :class:`~chanlog.backends.capabilities.ReadsStreamPayloads`,
    :class:`~chanlog.backends.capabilities.ExposesStreamIndex`,
    :class:`~chanlog.backends.capabilities.CountsStreams`,
    :class:`~chanlog.backends.capabilities.MayBeReadOnly`,
    :class:`~chanlog.backends.consumer_store.KeepsConsumers` and
    :class:`~chanlog.backends.capabilities.RecordsSerializer`, and :meth:`find_many`.

    Raises:
        ConfigError: a missing, unknown or ill-typed option.
        NotFound: ``read_only`` or ``create=False``, and the schema holds no log.
        StorageError: the server cannot be reached (the message names host and port), or
            the schema holds something that is not a chanlog log of a version this package
            reads.

    Use :meth:`drop_schema` (or the module function :func:`drop_schema`) to delete a log, e.g.
    after a benchmark.
    """

    name = "postgres"
    shared = True
    groups_commits = True  # a commit is a round trip and a WAL flush: group concurrent appends

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        durability: str = "full",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        lock_timeout: float = 30.0,
        pool_timeout: float = 10.0,
        read_only: bool = False,
        create: bool = True,
        **unknown: Any,
    ) -> None:
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(
                f"postgres backend: unknown option {key!r} (options: {', '.join(OPTION_NAMES)})",
                key=f"backend.{key}",
            )
        self._dsn, self.server = parse_dsn(dsn)
        self._keepalives = server_keepalives(self._dsn)
        self.schema = check_schema_name(schema)
        self.durability = check_durability(durability)
        self.pool_size = check_pool_size(pool_size)
        self.connect_timeout = check_seconds("connect_timeout", connect_timeout)
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        self.pool_timeout = check_seconds("pool_timeout", pool_timeout)
        self.read_only = check_flag("read_only", read_only)
        """True when this handle refuses every write."""
        create = check_flag("create", create) and not self.read_only
        self.channel = notify_channel(self.schema)
        self._where = f"postgres backend ({self.server}, schema {self.schema!r})"
        self._sql = Statements(self.schema)
        self._closed = False
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        with self._connect() as connection:
            ensure_schema(connection, self.schema, create=create, read_only=self.read_only)
        self._pool = self._open_pool()
        self.consumer_table = self._consumers = PostgresConsumers(
            self._borrow,
            self.schema,
            self._where,
            self.lock_timeout,
            read_only=self.read_only,
            tables=not self.read_only,  # a writer's open upgraded the schema
        )

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return connect(self._dsn, self.server, connect_timeout=self.connect_timeout)

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool = open_pool(
            self._dsn,
            name=f"chanlog-{self.schema}",
            size=self.pool_size,
            connect_timeout=self.connect_timeout,
            timeout=self.pool_timeout,
            configure=self._configure_connection,
        )
        try:
            pool.open(wait=True, timeout=self.connect_timeout * 2)
        except PoolTimeout as exc:
            pool.close(timeout=0)
            raise StorageError(
                f"{self._where}: cannot open connections within {self.connect_timeout * 2:g} s"
            ) from exc
        return pool

    def _configure_connection(self, connection: psycopg.Connection[Any]) -> None:
        # A session setting: every write transaction on this connection gives up waiting for
        # another process's writer lock after lock_timeout rather than hanging.
        connection.execute(f"SET lock_timeout = {round(self.lock_timeout * 1000)}")
        read_committed(connection)  # the writer lock needs it, whatever the default
        connection.execute(f"SET synchronous_commit = {DURABILITY_LEVELS[self.durability]}")
        if self._keepalives is not None:
            # A writer whose host vanishes holds the head row lock until the server notices.
            connection.execute(self._keepalives)
        if self.read_only:
            # The server itself refuses writes on these sessions, whatever the code does.
            connection.execute("SET default_transaction_read_only = on")

    @contextmanager
    def _borrow(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        """A live pooled connection for one operation (:func:`~chanlog_postgres.pooling.take`).
        The pool rolls back a connection returned inside a transaction and discards a broken
        one; one the server hung up on while idle is never lent, so after a restart the
        server's return is the only wait."""
        if self._closed:
            raise StorageError(f"{self._where}: cannot {action}: the backend is closed")
        try:
            connection = take(self._pool, self.pool_timeout)
        except PoolTimeout as exc:
            raise self._unavailable(action) from exc
        except PoolClosed as exc:
            raise StorageError(f"{self._where}: cannot {action}: the backend is closed") from exc
        try:
            yield connection
        finally:
            self._pool.putconn(connection)

    def _unavailable(self, action: str) -> StorageError:
        """Explain why no pooled connection came: the server is down, or the pool is busy."""
        try:
            with self._connect():
                pass
        except StorageError as down:
            return StorageError(f"{self._where}: cannot {action}: {down}")
        return StorageError(
            f"{self._where}: cannot {action}: all {self.pool_size} pooled connections stayed "
            f"busy for {self.pool_timeout:g} s (raise pool_size or pool_timeout)"
        )

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise StorageError(f"{self._where}: opened read-only; writes are refused")

    def _error(self, action: str, exc: psycopg.Error) -> StorageError:
        return storage_error(
            self._where, action, exc, held="the writer lock", lock_timeout=self.lock_timeout
        )

    def _fetch(self, action: str, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._borrow(action) as connection:
            try:
                return connection.execute(query, params, binary=True).fetchall()
            except psycopg.Error as exc:
                raise self._error(action, exc) from exc

    # -- the serializer of the log (RecordsSerializer) -------------------------------------

    def recorded_serializer(self) -> str | None:
        """The serializer the log records (its ``meta`` table), or ``None`` for a log
        created before chanlog recorded it."""
        with self._borrow("read the serializer") as connection:
            try:
                return meta_value(connection, self.schema, SERIALIZER)
            except psycopg.Error as exc:
                raise self._error("read the serializer", exc) from exc

    def record_serializer(self, name: str) -> str:
        """Record ``name`` unless the log records a serializer; return the recorded one.

        Raises:
            StorageError: the backend is read-only, or the server failed.
        """
        self._refuse_if_read_only()
        with self._borrow("record the serializer") as connection:
            try:
                with connection.transaction():
                    return record_meta(connection, self.schema, SERIALIZER, name)
            except psycopg.Error as exc:
                raise self._error("record the serializer", exc) from exc

    # -- the Backend protocol ------------------------------------------------------------

    def head(self) -> Head:
        """The committed head of the log (length and last chain hash)."""
        rows = self._fetch("read the head", self._sql.head, ())
        if not rows:
            raise StorageError(f"{self._where}: damaged log (the head row is missing)")
        length, chain_hash = rows[0]
        return Head(int(length), bytes(chain_hash))

    @contextmanager
    def write(self) -> Iterator[PostgresTransaction]:
        """Take the writer lock (the ``head`` row) and open a transaction; leaving the
        context commits, an exception rolls back.

        Raises:
            StorageError: the backend is read-only, the lock was not granted within
                ``lock_timeout``, or the server failed; nothing is committed then.
        """
        self._refuse_if_read_only()
        with self._borrow("append") as connection:
            try:
                with connection.transaction():
                    yield PostgresTransaction(
                        connection, self._sql, self._where, self.channel, self._consumers.sql
                    )
            except psycopg.Error as exc:
                raise self._error("append", exc) from exc

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        """Records with ``start <= offset < end``, in order, one page at a time."""
        position = start
        end = min(end, _MAX_POSITION)
        while position < end:
            rows = self._fetch("read records", self._sql.read, (position, end, READ_CHUNK))
            for row in rows:
                yield _record(row)
            if len(rows) < READ_CHUNK:
                return
            position = int(rows[-1][0]) + 1

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        """Records of ``stream`` with ``start <= offset < end``, in order, one page at a
        time, found through the stream index."""
        if "\x00" in stream:  # no entity id holds a NUL (ADR 0070), and text cannot
            return
        position = start
        stop = _MAX_POSITION if end is None else min(end, _MAX_POSITION)
        while position < stop:
            rows = self._fetch(
                "read a stream", self._sql.read_stream, (stream, position, stop, READ_CHUNK)
            )
            for row in rows:
                yield _record(row)
            if len(rows) < READ_CHUNK:
                return
            position = int(rows[-1][0]) + 1

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """``(offset, event_type, payload)`` of the records :meth:`read_stream` yields, one
        page at a time: what reconstruction folds over."""
        if "\x00" in stream:  # no entity id holds a NUL (ADR 0070), and text cannot
            return
        position = start
        stop = _MAX_POSITION if end is None else min(end, _MAX_POSITION)
        sql = self._sql.read_stream_payloads
        while position < stop:
            rows = self._fetch("read a stream", sql, (stream, position, stop, READ_CHUNK))
            yield from rows
            if len(rows) < READ_CHUNK:
                return
            position = int(rows[-1][0]) + 1

    def stream_index(self) -> Iterator[tuple[str, int]]:
        """Every ``(stream, offset)`` row of the ``streams`` table (the index
        :meth:`read_stream` joins) for the records committed when the iteration starts,
        ordered by offset then stream (code point order), through a server-side cursor:
        one pooled connection and one read transaction are held until the iteration ends.
        """
        length = self.head().length
        with self._borrow("read the stream index") as connection:
            try:
                with (
                    connection.transaction(),
                    connection.cursor(name="chanlog_stream_index", binary=True) as cursor,
                ):
                    cursor.itersize = 8 * READ_CHUNK
                    cursor.execute(self._sql.stream_index, (length,))
                    yield from cursor
            except psycopg.Error as exc:
                raise self._error("read the stream index", exc) from exc

    def stored_stream_versions(self) -> Mapping[str, int]:
        """``{stream: count}`` as the ``stream_versions`` table stores it: what
        :meth:`stream_version` (and so ``expected_version``) answers from."""
        rows = self._fetch("read the stream versions", self._sql.stream_versions, ())
        return {str(stream): int(version) for stream, version in rows}

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        rows = self._fetch("look up an event id", self._sql.find, (event_id,))
        return int(rows[0][0]) if rows else None

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offsets of these event ids (``None`` where absent), in one query."""
        with self._borrow("look up event ids") as connection:
            try:
                return find_many(connection, self._sql, event_ids)
            except psycopg.Error as exc:
                raise self._error("look up event ids", exc) from exc

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream`` (none to one with a NUL, ADR 0070)."""
        if "\x00" in stream:
            return 0
        rows = self._fetch("count a stream", self._sql.stream_version, (stream,))
        return int(rows[0][0]) if rows else 0

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store a snapshot, replacing one at the same offset, in a transaction of its own
        (:meth:`PostgresTransaction.save_snapshot
        <chanlog_postgres.transaction.PostgresTransaction.save_snapshot>` writes one inside
        a write transaction)."""
        self._refuse_if_read_only()
        params = snapshot_params(snapshot)
        with self._borrow("save a snapshot") as connection:
            try:
                connection.execute(self._sql.save_snapshot, params)
            except psycopg.Error as exc:
                raise self._error("save a snapshot", exc) from exc

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        """The snapshot with the greatest offset ``<= before`` (any, when ``before`` is None)."""
        limit = _MAX_POSITION if before is None else before
        if limit < 0:
            return None
        rows = self._fetch("read a snapshot", self._sql.latest_snapshot, (limit,))
        if not rows:
            return None
        position, versions, data, snapshot_hash = rows[0]
        try:
            decoded = {str(k): int(v) for k, v in versions.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            # jsonb holds any JSON: only an edit outside chanlog stores anything but an
            # object of integers there.
            raise StorageError(
                f"{self._where}: snapshot at offset {position} has unreadable versions "
                f"({str(versions)[:60]}): the row was changed outside chanlog",
                snapshot_offset=int(position),
            ) from exc
        return StoredSnapshot(int(position), decoded, data, snapshot_hash)

    def snapshot_sizes(self) -> list[tuple[int, int]]:
        """``(offset, bytes)`` of every stored snapshot, by offset (ManagesSnapshots)."""
        rows = self._fetch("list snapshots", self._sql.snapshot_sizes, ())
        return [(int(position), int(size)) for position, size in rows]

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets``; return how many there were."""
        self._refuse_if_read_only()
        with self._borrow("delete snapshots") as connection:
            try:
                cursor = connection.execute(self._sql.delete_snapshots, (sorted(set(offsets)),))
            except psycopg.Error as exc:
                raise self._error("delete snapshots", exc) from exc
        return int(cursor.rowcount)

    def wait(self, length: int, timeout: float) -> bool:
        """Block until the log is longer than ``length`` or ``timeout`` seconds pass; return
        whether it grew. Woken by the NOTIFY every append transaction sends at commit,
        whichever process made it."""
        timeout = max(0.0, timeout)
        deadline = time.monotonic() + timeout
        acquired = (
            self._listen_lock.acquire(timeout=timeout)
            if timeout > 0
            else self._listen_lock.acquire(blocking=False)
        )
        if not acquired:
            return self.head().length > length
        try:
            listener = self._listening_connection()
            # Listening first, then looking: an append committed in between is either in
            # the head already or announced to the listener.
            if self.head().length > length:
                return True
            while (remaining := deadline - time.monotonic()) > 0:
                for notification in listener.notifies(timeout=remaining, stop_after=1):
                    if self._announced_length(notification.payload) > length:
                        return True
            return False
        except psycopg.Error as exc:
            self._drop_listener()
            raise self._error("wait for appends", exc) from exc
        finally:
            self._listen_lock.release()

    def _announced_length(self, payload: str) -> int:
        try:
            return int(payload)
        except ValueError:
            # Not one of ours (someone else NOTIFYing on the channel): ask the log itself.
            return self.head().length

    def _listening_connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StorageError(f"{self._where}: cannot wait for appends: the backend is closed")
        listener = self._listener
        if listener is None or listener.closed:
            listener = self._connect()
            try:
                listener.execute(f'LISTEN "{self.channel}"')
            except psycopg.Error:
                listener.close()
                raise
            self._listener = listener
        return listener

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Close the pool and the LISTEN connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.close(timeout=5.0)
        # A watcher thread may be inside wait(); its timeouts are short, so waiting for the
        # lock keeps close() from pulling the connection out from under it.
        acquired = self._listen_lock.acquire(timeout=5.0)
        try:
            self._drop_listener()
        finally:
            if acquired:
                self._listen_lock.release()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def drop_schema(self) -> bool:
        """Close this backend, then drop its schema with every record and snapshot in it;
        return whether the schema existed. Irreversible: meant for tests and benchmark
        cleanup. Refused on a read-only handle."""
        self._refuse_if_read_only()
        self.close()
        with self._connect() as connection:
            return remove_schema(connection, self.schema)

    def __repr__(self) -> str:
        mode = " read_only" if self.read_only else ""
        return f"<PostgresBackend {self.server} schema={self.schema!r}{mode}>"


def drop_schema(dsn: str, schema: str = DEFAULT_SCHEMA, *, connect_timeout: float = 5.0) -> bool:
    """Drop the chanlog log in ``schema`` (tables, records, snapshots); return whether it
    existed. A schema that is not a chanlog log is refused with :class:`StorageError`.

    Irreversible: meant for tests and benchmark cleanup.
    """
    checked_dsn, server = parse_dsn(dsn)
    timeout = check_seconds("connect_timeout", connect_timeout)
    with connect(checked_dsn, server, connect_timeout=timeout) as connection:
        return remove_schema(connection, check_schema_name(schema))
