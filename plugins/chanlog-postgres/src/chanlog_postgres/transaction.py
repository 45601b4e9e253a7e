"""The ``postgres`` backend's write transaction: it holds the ``head`` row lock, so it is the
only writer of the log until it commits or rolls back (ADR 0012).

It implements :class:`~chanlog.backends.base.WriteTransaction` and the capabilities
:class:`~chanlog.backends.capabilities.FindsMany`,
:class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`,
:class:`~chanlog.backends.capabilities.DeletesSnapshotsInTransaction` and
:class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from chanlog.errors import StorageError
from chanlog.records import Head, PositionMove, StoredRecord, StoredSnapshot
from chanlog_postgres.connection import describe_error
from chanlog_postgres.consumers import ConsumerStatements, move_in_transaction
from chanlog_postgres.statements import Statements

__all__ = ["COPY_THRESHOLD", "PostgresTransaction", "find_many", "snapshot_params"]

COPY_THRESHOLD = 8
"""Appends of at least this many records use binary COPY (one stream of rows) instead of
pipelined INSERTs (which win for a few rows: everything travels in one round trip)."""

_EVENT_TYPES = ["int8", "bytea", "text", "text[]", "bytea", "bytea"]
_STREAM_TYPES = ["text", "int8"]


def find_many(
    connection: psycopg.Connection[Any], sql: Statements, event_ids: Sequence[bytes]
) -> list[int | None]:
    """The offsets of ``event_ids`` (``None`` where absent), in order, in one query."""
    ids = list(event_ids)
    if not ids:
        return []
    rows = connection.execute(sql.find_many, (ids,), binary=True).fetchall()
    found = {bytes(event_id): int(position) for event_id, position in rows}
    return [found.get(event_id) for event_id in ids]


def snapshot_params(snapshot: StoredSnapshot) -> tuple[int, Jsonb, bytes, bytes]:
    """The parameters of :attr:`Statements.save_snapshot` for ``snapshot``."""
    return (snapshot.offset, Jsonb(dict(snapshot.versions)), snapshot.data, snapshot.snapshot_hash)


def _copy(
    cursor: psycopg.Cursor[Any], statement: str, types: list[str], rows: list[tuple[Any, ...]]
) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


class PostgresTransaction:
    """The write session :meth:`PostgresBackend.write
    <chanlog_postgres.backend.PostgresBackend.write>` yields. Creating it locks the
    ``head`` row and reads the head under the lock.

    Args:
        connection: the pooled connection, inside its transaction.
        sql: the statements of the backend's schema.
        where: how error messages name the backend (server and schema).
        channel: the NOTIFY channel announcing appends.
        consumers: the statements on the consumer tables (``None``: the transaction moves no
            consumer).

    Raises:
        StorageError: the head row is missing (a damaged log).
    """

    __slots__ = ("_channel", "_connection", "_consumers", "_length", "_sql", "_where", "head")

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        sql: Statements,
        where: str,
        channel: str,
        consumers: ConsumerStatements | None = None,
    ) -> None:
        self._connection = connection
        self._sql = sql
        self._consumers = consumers
        self._where = where
        self._channel = channel
        row = connection.execute(sql.lock_head).fetchone()
        if row is None:
            raise StorageError(f"{where}: damaged log (the head row is missing)")
        self.head = Head(int(row[0]), bytes(row[1]))
        self._length = self.head.length

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        row = self._connection.execute(self._sql.find, (event_id,)).fetchone()
        return None if row is None else int(row[0])

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offsets of these event ids (``None`` where absent), in one round trip."""
        return find_many(self._connection, self._sql, event_ids)

    def stream_version(self, stream: str) -> int:
        """How many committed records belong to ``stream`` (none to one with a NUL, which
        no entity id holds: ADR 0070)."""
        if "\x00" in stream:
            return 0
        row = self._connection.execute(self._sql.stream_version, (stream,)).fetchone()
        return 0 if row is None else int(row[0])

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Write ``snapshot`` (replacing one at the same offset) in this transaction: it
        commits with the records, or rolls back with them."""
        self._connection.execute(self._sql.save_snapshot, snapshot_params(snapshot))

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` in this transaction (they are gone once it
        commits); return how many there were."""
        cursor = self._connection.execute(self._sql.delete_snapshots, (sorted(set(offsets)),))
        return int(cursor.rowcount)

    def move_consumer(self, move: PositionMove) -> None:
        """Check ``move`` now, under the consumer's row lock, and apply it in this
        transaction: it commits with the records, or rolls back with them.

        Raises:
            NotFound, LeaseHeld, InvalidArgument: the rules of
                :mod:`~chanlog.backends.consumer_store` refuse it; nothing was changed, and
                the caller rolls the transaction back.
            StorageError: the backend keeps no consumers in this transaction.
        """
        if self._consumers is None:
            raise StorageError(f"{self._where}: this transaction was opened without consumers")
        try:
            move_in_transaction(self._connection, self._consumers, move)
        except psycopg.Error as exc:
            # Said here: the backend's own message would blame the writer lock or the append.
            raise StorageError(
                f"{self._where}: cannot move consumer {move.consumer!r}: {describe_error(exc)}"
            ) from exc

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Insert records continuing the head, move the head and queue the NOTIFY; all of it
        becomes visible (and the notification is delivered) at commit."""
        if not records:
            return
        expected = self._length
        for record in records:
            if record.offset != expected:
                raise StorageError(
                    f"{self._where}: record offset {record.offset} does not continue "
                    f"the log (next offset is {expected})"
                )
            expected += 1
        event_rows = [
            (
                record.offset,
                record.event_id,
                record.event_type,
                list(record.streams),
                record.payload,
                record.chain_hash,
            )
            for record in records
        ]
        stream_rows = [
            (stream, record.offset)
            for record in records
            for stream in dict.fromkeys(record.streams)
        ]
        versions = Counter(stream for stream, _ in stream_rows)
        sql = self._sql
        chain = records[-1].chain_hash
        connection = self._connection
        with connection.cursor() as cursor:
            if len(records) >= COPY_THRESHOLD:
                _copy(cursor, sql.copy_events, _EVENT_TYPES, event_rows)
                _copy(cursor, sql.copy_streams, _STREAM_TYPES, stream_rows)
            with connection.pipeline():
                if len(records) < COPY_THRESHOLD:
                    cursor.executemany(sql.insert_event, event_rows)
                    if stream_rows:
                        cursor.executemany(sql.insert_stream, stream_rows)
                if versions:
                    cursor.executemany(sql.bump_version, list(versions.items()))
                cursor.execute(sql.set_head, (expected, chain))
                # Delivered at commit, and never for a rolled-back transaction.
                cursor.execute(sql.notify, (self._channel, str(expected)))
        self._length = expected
