"""The ``postgres`` backend's durable consumers (DESIGN section 10, ADR 0027): positions,
leases and parked records in the ``consumers`` and ``parked_records`` tables of layout
version 2, by the rules of :mod:`chanlog.backends.consumer_store`.

Processes on different machines agree because the server decides:

- every write is one transaction that first locks the consumer's row
  (``SELECT ... FOR UPDATE``): two runners taking, renewing or moving one consumer are
  serialised by the server, and the second sees what the first committed;
- times are the server's clock (``extract(epoch FROM clock_timestamp())``), read after the
  row lock is granted, so runners with skewed clocks agree on when a lease expires;
- a write transaction moves a consumer with its records (:func:`move_in_transaction`): the
  move is checked under the row lock inside that transaction and commits or rolls back with
  it. Lock order is the ``head`` row, then the consumer's row, and a write outside a
  transaction locks the consumer's row only, so the two never wait for each other in a cycle.

A waiting lock gives up after the backend's ``lock_timeout``, like an append. A read-only
handle on a schema of layout version 1 (no consumer tables until a writer upgrades it) keeps
no consumers: its reads report none, and look again for the tables until a writer made them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import attrs
import psycopg

from chanlog.backends.consumer_store import (
    check_move,
    check_position,
    ends_last_error,
    held_elsewhere,
)
from chanlog.errors import NotFound, StorageError
from chanlog.records import ConsumerState, ParkedRecord, PositionMove
from chanlog_postgres.connection import storage_error
from chanlog_postgres.schema import quoted

__all__ = ["ConsumerStatements", "PostgresConsumers", "move_in_transaction"]

_T = TypeVar("_T")
_MAX_POSITION = 2**63 - 1  # bigint

Borrow = Callable[[str], AbstractContextManager[psycopg.Connection[Any]]]
"""Lends a pooled (autocommit) connection for one operation, named for error messages."""


class ConsumerStatements:
    """Every statement on the consumer tables of ``schema``."""

    __slots__ = (
        "clock",
        "delete",
        "errors",
        "errors_all",
        "fall_back",
        "has_tables",
        "insert",
        "lock",
        "move",
        "park",
        "parked",
        "replay",
        "replay_all",
        "reset",
        "select",
        "select_all",
        "set_lease",
        "set_subjects",
        "tables_name",
        "touch",
        "unpark",
        "unpark_all",
    )

    def __init__(self, schema: str) -> None:
        s = quoted(schema)
        state = (
            "SELECT c.name, c.position, c.subjects, c.handled,"
            f" (SELECT count(*) FROM {s}.parked_records AS p WHERE p.consumer = c.name),"
            " c.lease_holder, c.lease_expires_at, c.last_error, c.updated_at"
            f" FROM {s}.consumers AS c"
        )
        self.select = state + " WHERE c.name = %s"
        self.lock = self.select + " FOR UPDATE OF c"
        # COLLATE "C": code point order, as Python sorts str (and the other backends list).
        self.select_all = state + ' ORDER BY c.name COLLATE "C"'
        self.clock = "SELECT extract(epoch FROM clock_timestamp())::float8"
        self.tables_name = f"{s}.consumers"
        self.has_tables = "SELECT to_regclass(%s) IS NOT NULL"
        self.insert = (
            f"INSERT INTO {s}.consumers (name, position, subjects, handled, updated_at)"
            " VALUES (%s, %s, %s, 0, %s) ON CONFLICT (name) DO NOTHING"
        )
        self.set_subjects = (
            f"UPDATE {s}.consumers SET subjects = %s, updated_at = %s WHERE name = %s"
        )
        self.set_lease = (
            f"UPDATE {s}.consumers SET lease_holder = %s, lease_expires_at = %s WHERE name = %s"
        )
        self.move = (
            f"UPDATE {s}.consumers SET position = %s, handled = handled + %s,"
            " lease_expires_at = %s, last_error = nullif(coalesce(%s, last_error), ''),"
            " updated_at = %s"
            " WHERE name = %s"
        )
        # What an ended last error falls back to (ADR 0054): the latest failure still parked.
        self.fall_back = (
            f"UPDATE {s}.consumers SET last_error = (SELECT p.error FROM {s}.parked_records AS p"
            " WHERE p.consumer = %s ORDER BY p.parked_at DESC, p.position DESC LIMIT 1)"
            " WHERE name = %s"
        )
        self.errors_all = f"SELECT error FROM {s}.parked_records WHERE consumer = %s"
        self.errors = self.errors_all + " AND position = ANY(%s::bigint[])"
        self.reset = f"UPDATE {s}.consumers SET position = %s, updated_at = %s WHERE name = %s"
        self.touch = f"UPDATE {s}.consumers SET updated_at = %s WHERE name = %s"
        self.park = (
            f"INSERT INTO {s}.parked_records (consumer, position, event_id, event_type, attempts,"
            " error, parked_at, replay) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (consumer, position) DO UPDATE SET event_id = EXCLUDED.event_id,"
            " event_type = EXCLUDED.event_type, attempts = EXCLUDED.attempts,"
            " error = EXCLUDED.error, parked_at = EXCLUDED.parked_at, replay = EXCLUDED.replay"
        )
        chosen = " WHERE consumer = %s AND position = ANY(%s::bigint[])"
        self.unpark = f"DELETE FROM {s}.parked_records" + chosen
        self.unpark_all = f"DELETE FROM {s}.parked_records WHERE consumer = %s"
        self.replay = f"UPDATE {s}.parked_records SET replay = true" + chosen
        self.replay_all = f"UPDATE {s}.parked_records SET replay = true WHERE consumer = %s"
        self.delete = f"DELETE FROM {s}.consumers WHERE name = %s"
        # One statement: "no such consumer" and "nothing parked" told apart in one snapshot.
        self.parked = (
            "SELECT c.name, p.position, p.event_id, p.event_type, p.attempts, p.error,"
            f" p.parked_at, p.replay FROM {s}.consumers AS c"
            f" LEFT JOIN {s}.parked_records AS p ON p.consumer = c.name"
            " WHERE c.name = %s ORDER BY p.position"
        )


def _state(row: Sequence[Any]) -> ConsumerState:
    name, position, subjects, handled, parked, holder, expires, error, updated = row
    return ConsumerState(
        name,
        int(position),
        tuple(subjects),
        int(handled),
        int(parked),
        holder,
        None if expires is None else float(expires),
        error,
        float(updated),
    )


def _parked(row: Sequence[Any]) -> ParkedRecord:
    consumer, position, event_id, event_type, attempts, error, parked_at, replay = row
    return ParkedRecord(
        consumer,
        int(position),
        event_id,
        event_type,
        int(attempts),
        error,
        float(parked_at),
        replay,
    )


def _offsets(offsets: Sequence[int]) -> list[int]:
    """Each offset that could be parked, once (others cannot match a row)."""
    return sorted({o for o in offsets if type(o) is int and 0 <= o <= _MAX_POSITION})


def _locked(
    connection: psycopg.Connection[Any], sql: ConsumerStatements, name: str
) -> tuple[ConsumerState | None, float]:
    """Lock the consumer's row (waiting for another transaction holding it); return its
    state and the server's clock read after the lock was granted."""
    row = connection.execute(sql.lock, (name,)).fetchone()
    clock = connection.execute(sql.clock).fetchone()
    assert clock is not None
    return (None if row is None else _state(row)), float(clock[0])


def _existing(
    connection: psycopg.Connection[Any], sql: ConsumerStatements, name: str
) -> tuple[ConsumerState, float]:
    state, now = _locked(connection, sql, name)
    if state is None:
        raise NotFound(f"no consumer named {name!r}")
    return state, now


def _ends(
    connection: psycopg.Connection[Any],
    sql: ConsumerStatements,
    state: ConsumerState,
    error: str | None,
    offsets: Sequence[int] | None,
) -> bool:
    """Whether a write carrying ``error`` and removing the parked records at ``offsets``
    (``None``: all) ends ``state``'s last error
    (:func:`~chanlog.backends.consumer_store.ends_last_error`); asked before the records are
    removed, and only of those when it could be."""
    last_error = state.last_error
    if error is not None or last_error is None or offsets == ():
        return ends_last_error(last_error, error, ())
    if offsets is None:
        rows = connection.execute(sql.errors_all, (state.name,)).fetchall()
    else:
        rows = connection.execute(sql.errors, (state.name, _offsets(offsets))).fetchall()
    return ends_last_error(last_error, None, [row[0] for row in rows])


def move_in_transaction(
    connection: psycopg.Connection[Any], sql: ConsumerStatements, move: PositionMove
) -> None:
    """Check ``move`` under the consumer's row lock and apply it, on ``connection`` inside
    its transaction: it commits with that transaction or rolls back with it.

    Raises:
        NotFound, LeaseHeld, InvalidArgument: the rules refuse it (nothing was changed).
        psycopg.Error: for the caller to translate.
    """
    locked, now = _locked(connection, sql, move.consumer)
    state = check_move(move, locked, now)
    name = move.consumer
    with connection.cursor() as cursor:
        if move.parked:
            cursor.executemany(
                sql.park,
                [
                    (name, r.offset, r.event_id, r.event_type, r.attempts, r.error, now, r.replay)
                    for r in move.parked
                ],
            )
        ended = _ends(connection, sql, state, move.error, move.unparked)
        if move.unparked:
            cursor.execute(sql.unpark, (name, _offsets(move.unparked)))
        cursor.execute(
            sql.move, (move.position, move.handled, now + move.lease_ttl, move.error, now, name)
        )
        if ended:
            cursor.execute(sql.fall_back, (name, name))


class PostgresConsumers:
    """The consumers of one ``postgres`` backend (the backend's consumer methods delegate
    here).

    Args:
        borrow: lends a pooled connection for one operation.
        schema: the log's schema.
        where: how error messages name the backend (server and schema).
        lock_timeout: the backend's ``lock_timeout``, for the message when it runs out.
        read_only: refuse every write.
        tables: whether the schema has the consumer tables (False for a read-only handle on a
            layout version 1 schema: then the tables are looked for at each read until found).
    """

    def __init__(
        self,
        borrow: Borrow,
        schema: str,
        where: str,
        lock_timeout: float,
        *,
        read_only: bool,
        tables: bool,
    ) -> None:
        self._borrow = borrow
        self.sql = ConsumerStatements(schema)
        """The statements (a write transaction moves consumers with them)."""
        self._where = where
        self._lock_timeout = lock_timeout
        self._read_only = read_only
        self._tables = tables

    def _error(self, action: str, exc: psycopg.Error) -> StorageError:
        return storage_error(
            self._where, action, exc, held="the consumer's row", lock_timeout=self._lock_timeout
        )

    def clock(self) -> float:
        """Unix seconds now by the server's clock, which writes and judges the leases."""
        return float(self._query("read the server's clock", self.sql.clock, ())[0][0])

    # -- reads -------------------------------------------------------------------------------

    def _query(self, action: str, query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._borrow(action) as connection:
            try:
                return connection.execute(query, params).fetchall()
            except psycopg.Error as exc:
                raise self._error(action, exc) from exc

    def _has_tables(self) -> bool:
        if not self._tables:
            rows = self._query(
                "look for the consumer tables", self.sql.has_tables, (self.sql.tables_name,)
            )
            self._tables = bool(rows[0][0])
        return self._tables

    def state(self, name: str) -> ConsumerState | None:
        """The consumer ``name``, or ``None``."""
        if not self._has_tables():
            return None
        rows = self._query("read a consumer", self.sql.select, (name,))
        return _state(rows[0]) if rows else None

    def states(self) -> list[ConsumerState]:
        """Every consumer, by name."""
        if not self._has_tables():
            return []
        return [_state(row) for row in self._query("read the consumers", self.sql.select_all, ())]

    def parked(self, name: str) -> list[ParkedRecord]:
        """The consumer's parked records, by offset (:class:`NotFound` without it)."""
        rows = (
            self._query("read parked records", self.sql.parked, (name,))
            if self._has_tables()
            else []
        )
        if not rows:
            raise NotFound(f"no consumer named {name!r}")
        return [_parked(row) for row in rows if row[1] is not None]

    # -- writes ------------------------------------------------------------------------------

    def _write(
        self, action: str, operation: Callable[[psycopg.Connection[Any], ConsumerStatements], _T]
    ) -> _T:
        """Run ``operation(connection, statements)`` in a transaction of its own: committed
        when it returns, rolled back when it raises."""
        if self._read_only:
            raise StorageError(f"{self._where}: opened read-only; writes are refused")
        with self._borrow(action) as connection:
            try:
                with connection.transaction():
                    return operation(connection, self.sql)
            except psycopg.Error as exc:
                raise self._error(action, exc) from exc

    def ensure(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        """Create ``name`` at ``position`` unless it exists; record ``subjects`` either way."""
        check_position(name, position)
        patterns = tuple(subjects)

        def ensure(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> ConsumerState:
            clock = connection.execute(sql.clock).fetchone()
            assert clock is not None
            connection.execute(sql.insert, (name, position, list(patterns), float(clock[0])))
            state, now = _existing(connection, sql, name)
            if state.subjects != patterns:
                connection.execute(sql.set_subjects, (list(patterns), now, name))
                return attrs.evolve(state, subjects=patterns, updated_at=now)
            return state

        return self._write("register a consumer", ensure)

    def acquire(self, name: str, holder: str, ttl: float) -> ConsumerState:
        """Take or renew the lease (:class:`~chanlog.errors.LeaseHeld` while another's runs)."""

        def acquire(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> ConsumerState:
            state, now = _existing(connection, sql, name)
            error = held_elsewhere(state, holder, now)
            if error is not None:
                raise error
            connection.execute(sql.set_lease, (holder, now + ttl, name))
            return attrs.evolve(state, lease_holder=holder, lease_expires_at=now + ttl)

        return self._write("take a consumer's lease", acquire)

    def release(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""

        def release(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> None:
            state, _ = _existing(connection, sql, name)
            if state.lease_holder == holder:
                connection.execute(sql.set_lease, (None, None, name))

        self._write("release a consumer's lease", release)

    def move(self, move: PositionMove) -> None:
        """Check and apply ``move`` in a transaction of its own."""
        self._write(
            "move a consumer", lambda connection, sql: move_in_transaction(connection, sql, move)
        )

    def reset(self, name: str, position: int) -> ConsumerState:
        """Set the position, refused while a lease runs; parked records stay."""
        check_position(name, position)

        def reset(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> ConsumerState:
            state, now = _existing(connection, sql, name)
            error = held_elsewhere(state, None, now)
            if error is not None:
                raise error
            connection.execute(sql.reset, (position, now, name))
            return attrs.evolve(state, position=position, updated_at=now)

        return self._write("reset a consumer", reset)

    def request_replay(self, name: str, offsets: Sequence[int] | None) -> int:
        """Mark parked records (``None``: all) for replay; return how many."""

        def mark(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> int:
            _existing(connection, sql, name)
            if offsets is None:
                return connection.execute(sql.replay_all, (name,)).rowcount
            return connection.execute(sql.replay, (name, _offsets(offsets))).rowcount

        return self._write("request a replay", mark)

    def drop(self, name: str, offsets: Sequence[int] | None) -> int:
        """Forget parked records (``None``: all); return how many."""

        def drop(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> int:
            state, now = _existing(connection, sql, name)
            ended = _ends(connection, sql, state, None, offsets)
            if offsets is None:
                dropped = connection.execute(sql.unpark_all, (name,)).rowcount
            else:
                dropped = connection.execute(sql.unpark, (name, _offsets(offsets))).rowcount
            connection.execute(sql.touch, (now, name))
            if ended:
                connection.execute(sql.fall_back, (name, name))
            return dropped

        return self._write("drop parked records", drop)

    def delete(self, name: str) -> bool:
        """Remove the consumer and its parked records (``ON DELETE CASCADE``); False when it
        did not exist."""

        def delete(connection: psycopg.Connection[Any], sql: ConsumerStatements) -> bool:
            return connection.execute(sql.delete, (name,)).rowcount > 0

        return self._write("delete a consumer", delete)
