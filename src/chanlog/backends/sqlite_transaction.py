"""The ``sqlite`` backend's write transaction: the writer lock of this process's threads,
then ``BEGIN IMMEDIATE`` (SQLite's writer lock across processes), the head read inside it,
the inserts, and the commit or rollback (ADRs 0010, 0018 and 0022).

It implements :class:`~chanlog.backends.base.WriteTransaction` and the transaction
capabilities :class:`~chanlog.backends.capabilities.FindsMany`,
:class:`~chanlog.backends.capabilities.AppendsUnlessKnown`,
:class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`,
:class:`~chanlog.backends.capabilities.DeletesSnapshotsInTransaction` and
:class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from chanlog.backends import sqlite_queries as queries
from chanlog.backends.sqlite_connections import SqliteConnections
from chanlog.backends.sqlite_consumers import move_in_transaction
from chanlog.backends.sqlite_rows import event_rows, head_of, snapshot_row
from chanlog.errors import StorageError
from chanlog.records import Head, PositionMove, StoredRecord, StoredSnapshot

__all__ = ["SqliteTransaction"]


class SqliteTransaction:
    """The write session :meth:`SqliteBackend.write <chanlog.backends.sqlite.SqliteBackend.write>`
    returns: entering it takes the writer lock and ``BEGIN IMMEDIATE`` and reads the head;
    leaving it commits (or rolls back on an exception) and releases the lock.

    The store calls these methods once per event or per batch, so they talk to SQLite
    directly (no closures, statements cached by their text) and wrap only the failures.

    Args:
        connections: the backend's connections (their writer and its lock).
        block: the file's ``stream_index_block``.
    """

    __slots__ = ("_block", "_connection", "_connections", "_length", "_path", "head")

    head: Head
    """The head of the log when the writer lock was taken (set on entering)."""

    def __init__(self, connections: SqliteConnections, block: int) -> None:
        self._connections = connections
        self._block = block
        self._path: Path = connections.options.path
        self._length = 0

    def __enter__(self) -> SqliteTransaction:
        connections = self._connections
        connections.write_lock.acquire()
        try:
            connection = connections.writer  # refuses a closed or read-only backend
            if connection.in_transaction:
                raise StorageError(f"{self._path}: write transactions cannot be nested")
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise connections.storage_error("take the writer lock", exc) from exc
            try:
                head = head_of(connection.execute(queries.SELECT_LAST).fetchone(), self._path)
                reserve = connections.wal_reserve
                if reserve is not None:
                    reserve.extend()  # under the writer lock, before anything is written
            except sqlite3.Error as exc:
                connections.roll_back(connection)
                raise connections.storage_error("read the head", exc) from exc
            except BaseException:
                connections.roll_back(connection)
                raise
        except BaseException:
            connections.write_lock.release()
            raise
        self._connection = connection
        self.head = head
        self._length = head.length
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        connections = self._connections
        connection = self._connection
        try:
            if exc_type is not None:
                connections.roll_back(connection)
                return
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as commit_error:
                connections.roll_back(connection)
                raise connections.storage_error("commit", commit_error) from commit_error
        finally:
            connections.write_lock.release()

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        try:
            row = self._connection.execute(queries.FIND_ONE, (event_id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._connections.storage_error("look up an event id", exc) from exc
        return None if row is None else int(row[0])

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offset of each event id (``None`` for one not in the log), in the same order:
        one query per :data:`~chanlog.backends.sqlite_queries.FIND_CHUNK` ids instead of one
        per id."""
        try:
            found = queries.find_many(self._connection, event_ids)
        except sqlite3.Error as exc:
            raise self._connections.storage_error("look up event ids", exc) from exc
        return [found.get(event_id) for event_id in event_ids]

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream``, those staged in this transaction included."""
        try:
            return queries.count_stream(self._connection, stream, self._length, self._block)
        except sqlite3.Error as exc:
            raise self._connections.storage_error("count a stream", exc) from exc

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Insert records that continue the head; they become visible at commit."""
        if not self._insert(records):
            raise StorageError(
                f"{self._path}: {self._duplicate(records)}; none of records "
                f"{records[0].offset}..{records[-1].offset} was appended"
            )

    def append_unless_known(self, records: Sequence[StoredRecord]) -> bool:
        """Insert records that continue the head and return True; or, when an event id
        among them is already in the log, insert none of them and return False.

        The unique index on ``event_id`` decides, so the store need not look the ids up
        before every append (ADR 0022).
        """
        return self._insert(records)

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Write ``snapshot`` (replacing one at the same offset) in this transaction: it
        commits with the records, or rolls back with them."""
        try:
            self._connection.execute(queries.SAVE_SNAPSHOT, snapshot_row(snapshot))
        except sqlite3.Error as exc:
            raise self._connections.storage_error("save a snapshot", exc) from exc

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` in this transaction (they are gone once it
        commits); return how many there were."""
        connection = self._connection
        rows = [(offset,) for offset in sorted(set(offsets))]
        try:
            before = connection.total_changes
            connection.executemany(queries.DELETE_SNAPSHOT, rows)
        except sqlite3.Error as exc:
            raise self._connections.storage_error("delete snapshots", exc) from exc
        return connection.total_changes - before

    def move_consumer(self, move: PositionMove) -> None:
        """Check ``move`` now, under this transaction's writer lock, and apply it in this
        transaction: it commits with the records, or rolls back with them.

        Raises:
            NotFound, LeaseHeld, InvalidArgument: the rules of
                :mod:`~chanlog.backends.consumer_store` refuse it; nothing was changed, and
                the caller rolls the transaction back.
        """
        try:
            move_in_transaction(self._connection, move, self._path)
        except sqlite3.Error as exc:
            raise self._connections.storage_error("move a consumer", exc) from exc

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

    def _insert(self, records: Sequence[StoredRecord]) -> bool:
        if not records:
            return True
        rows = event_rows(records, self._length, self._path)
        start = self._length
        end = start + len(rows)
        connection = self._connection
        try:
            try:
                if len(rows) == 1:
                    connection.execute(queries.INSERT_EVENT, rows[0])
                else:
                    connection.executemany(queries.INSERT_EVENT, rows)
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname != "SQLITE_CONSTRAINT_UNIQUE":
                    raise
                # The rows before the duplicate went in: take them out again.
                connection.execute(queries.DELETE_FROM, (start,))
                return False
            block = self._block
            if end // block > start // block:
                queries.index_blocks(connection, start - start % block, end - end % block)
        except sqlite3.Error as exc:
            raise self._connections.storage_error("append records", exc) from exc
        self._length = end
        return True
