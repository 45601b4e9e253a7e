"""The connections of one ``sqlite`` backend: the writing connection with the lock that
serializes this process's writers, a small pool of read-only connections for readers, and
the translation of SQLite's failures into :class:`~chanlog.errors.StorageError`.

Reads borrow a pooled connection per query (autocommit: each statement sees the latest
commit, which for an append-only log only ever adds), so a large read never holds a lock or
a snapshot between chunks, and many threads read at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from chanlog.backends.sqlite_options import (
    WAL_AUTOCHECKPOINT_PAGES,
    FileAsIs,
    SqliteOptions,
    connect,
)
from chanlog.backends.sqlite_wal_reserve import WalReserve, log_limit
from chanlog.errors import StorageError

__all__ = ["MAX_IDLE_READERS", "SqliteConnections"]

MAX_IDLE_READERS = 8
"""Read-only connections kept open for reuse; more are opened under load and closed after."""

_T = TypeVar("_T")


class SqliteConnections:
    """The writer, the reader pool and the closed state of one backend.

    Args:
        options: the backend's checked options (path, timeout, read-only ...).

    Attributes:
        write_lock: held by a write transaction (and by :meth:`close`, which so waits for a
            write in progress): SQLite's writer lock is per connection, and this process
            has one writing connection.
        wal_reserve: grows the write-ahead log ahead of the writer's commits when every
            commit is synced (``durability="full"``), else ``None`` (ADR 0037).
    """

    def __init__(self, options: SqliteOptions) -> None:
        self.options = options
        self.write_lock = threading.RLock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        # A read-only backend has no writer at all: nothing can write through it.
        writer = None if options.read_only else connect(options, writer=True)
        self._writer = writer
        self.wal_reserve: WalReserve | None = None
        if writer is not None and options.durability == "full":
            try:
                page_size = int(writer.execute("PRAGMA page_size").fetchone()[0])
            except sqlite3.Error as exc:
                writer.close()
                raise self.storage_error("read the page size", exc) from exc
            self.wal_reserve = WalReserve(
                options.path, log_limit(WAL_AUTOCHECKPOINT_PAGES, page_size)
            )

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    @property
    def writer(self) -> sqlite3.Connection:
        """The writing connection.

        Raises:
            StorageError: the backend is read-only, or closed.
        """
        if self._writer is None:
            raise StorageError(f"{self.options.path}: opened read-only; writes are refused")
        if self._closed:
            raise StorageError(f"{self.options.path}: the backend is closed")
        return self._writer

    def idle_readers(self) -> int:
        """How many pooled read-only connections are open and idle."""
        return len(self._idle)

    # -- failures ------------------------------------------------------------------------

    def storage_error(self, action: str, exc: sqlite3.Error) -> StorageError:
        """The :class:`StorageError` for an SQLite failure while doing ``action``."""
        path = self.options.path
        if isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        ):
            return StorageError(
                f"{path}: cannot {action}: the database stayed locked by another "
                f"connection for more than {self.options.timeout:g} s ({exc})"
            )
        return StorageError(f"{path}: cannot {action}: {exc}")

    def guard(self, action: str, operation: Callable[[], _T]) -> _T:
        """Run ``operation()``, turning SQLite failures into :class:`StorageError`."""
        try:
            return operation()
        except sqlite3.Error as exc:
            raise self.storage_error(action, exc) from exc

    @staticmethod
    def roll_back(connection: sqlite3.Connection) -> None:
        """Roll back ``connection``'s transaction, if one is open.

        The original error is what the caller needs to see; a failing rollback (SQLite may
        already have rolled back on its own) must not replace it.
        """
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")

    # -- writing outside a write transaction ---------------------------------------------

    def write(self, action: str, statements: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``statements(writer)`` inside the write transaction this thread holds, or in
        one of its own (``BEGIN IMMEDIATE`` ... ``COMMIT``; nothing of it on a failure).

        Raises:
            StorageError: the backend is read-only or closed, or SQLite failed.
        """
        with self.write_lock:
            connection = self.writer
            if connection.in_transaction:
                return self.guard(action, lambda: statements(connection))
            self.guard("take the writer lock", lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                result = self.guard(action, lambda: statements(connection))
                self.guard("commit", lambda: connection.execute("COMMIT"))
            except BaseException:
                self.roll_back(connection)
                raise
            return result

    # -- readers -------------------------------------------------------------------------

    def query(self, action: str, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        """Run one read query on a pooled read-only connection; return every row."""
        return self.with_reader(
            action, lambda connection: connection.execute(sql, parameters).fetchall()
        )

    def with_reader(self, action: str, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation(connection)`` on a pooled read-only connection."""
        with self.reader() as connection:
            return self.guard(action, lambda: operation(connection))

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """Borrow a pooled read-only connection for the ``with`` block (SQLite failures
        inside are the caller's to translate)."""
        with self._pool_lock:
            if self._closed:
                raise StorageError(f"{self.options.path}: the backend is closed")
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = connect(self.options, writer=False)
        try:
            yield connection
        finally:
            with self._pool_lock:
                # A connection reading the file as it is would not see later commits.
                if (
                    self._closed
                    or len(self._idle) >= MAX_IDLE_READERS
                    or isinstance(connection, FileAsIs)
                ):
                    connection.close()
                else:
                    self._idle.append(connection)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> bool:
        """Close every connection (the last one to close folds the WAL into the file).
        Idempotent; waits for a write in progress on another thread to finish.

        Returns:
            True when this call closed them; False when they were closed already.
        """
        with self.write_lock:
            with self._pool_lock:
                if self._closed:
                    return False
                self._closed = True
                idle, self._idle = self._idle, []
            for connection in idle:
                connection.close()
            if self._writer is not None:
                self._writer.close()
            if self.wal_reserve is not None:
                self.wal_reserve.close()
        return True
