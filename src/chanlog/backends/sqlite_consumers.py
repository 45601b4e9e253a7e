"""The ``sqlite`` backend's durable consumers (DESIGN section 10, ADR 0027): positions,
leases and parked records in the ``consumers`` and ``parked_records`` tables of schema
version 3, by the rules of :mod:`chanlog.backends.consumer_store`.

Every write is one ``BEGIN IMMEDIATE`` transaction on the backend's writing connection, like
an append: SQLite's writer lock serialises it with every other process's writes to the file,
the state is read and checked under that lock, and the commit is as durable as a record's
(the connection's ``synchronous`` setting). Times are ``time.time()`` read under the lock, so
the processes sharing a file (on one machine) agree on when a lease expires. A write made
inside this thread's own write transaction joins it (as a snapshot does), and
:func:`move_in_transaction` is how the transaction moves a consumer with its records.

Reads go through the pooled read-only connections. A read-only handle on a file of schema
version 2 (no consumer tables until a writer upgrades it) keeps no consumers: its reads
report none, and look again for the tables until a writer has made them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import orjson

from chanlog.backends.consumer_store import (
    check_move,
    check_position,
    ends_last_error,
    held_elsewhere,
)
from chanlog.backends.sqlite_connections import SqliteConnections
from chanlog.backends.sqlite_queries import MAX_POSITION
from chanlog.backends.sqlite_rows import short
from chanlog.errors import NotFound, StorageError
from chanlog.records import ConsumerState, ParkedRecord, PositionMove

__all__ = ["SqliteConsumers", "consumer_of", "move_in_transaction", "parked_of"]

_T = TypeVar("_T")

# The parked count is counted, not stored: it cannot disagree with the parked rows.
_STATE = (
    "SELECT c.name, c.position, c.subjects, c.handled,"
    " (SELECT count(*) FROM parked_records AS p WHERE p.consumer = c.name),"
    " c.lease_holder, c.lease_expires_at, c.last_error, c.updated_at FROM consumers AS c"
)
SELECT_CONSUMER = _STATE + " WHERE c.name = ?"
SELECT_CONSUMERS = _STATE + " ORDER BY c.name"
# One statement, so "no such consumer" and "nothing parked" are told apart in one snapshot.
SELECT_PARKED = (
    "SELECT c.name, p.position, p.event_id, p.event_type, p.attempts, p.error, p.parked_at,"
    " p.replay FROM consumers AS c LEFT JOIN parked_records AS p ON p.consumer = c.name"
    " WHERE c.name = ? ORDER BY p.position"
)
HAS_TABLES = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'consumers'"
INSERT_CONSUMER = (
    "INSERT INTO consumers (name, position, subjects, handled, updated_at) VALUES (?, ?, ?, 0, ?)"
)
SET_SUBJECTS = "UPDATE consumers SET subjects = ?, updated_at = ? WHERE name = ?"
SET_LEASE = "UPDATE consumers SET lease_holder = ?, lease_expires_at = ? WHERE name = ?"
MOVE = (
    "UPDATE consumers SET position = ?, handled = handled + ?, lease_expires_at = ?,"
    " last_error = nullif(coalesce(?, last_error), ''), updated_at = ? WHERE name = ?"
)
# What an ended last error falls back to (ADR 0054): the latest failure still parked, or none.
FALL_BACK = (
    "UPDATE consumers SET last_error = (SELECT p.error FROM parked_records AS p"
    " WHERE p.consumer = ? ORDER BY p.parked_at DESC, p.position DESC LIMIT 1) WHERE name = ?"
)
PARKED_ERROR = "SELECT error FROM parked_records WHERE consumer = ? AND position = ?"
PARKED_ERRORS = "SELECT error FROM parked_records WHERE consumer = ?"
RESET = "UPDATE consumers SET position = ?, updated_at = ? WHERE name = ?"
TOUCH = "UPDATE consumers SET updated_at = ? WHERE name = ?"
PARK = (
    "INSERT OR REPLACE INTO parked_records (consumer, position, event_id, event_type,"
    " attempts, error, parked_at, replay) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UNPARK = "DELETE FROM parked_records WHERE consumer = ? AND position = ?"
UNPARK_ALL = "DELETE FROM parked_records WHERE consumer = ?"
REPLAY = "UPDATE parked_records SET replay = 1 WHERE consumer = ? AND position = ?"
REPLAY_ALL = "UPDATE parked_records SET replay = 1 WHERE consumer = ?"
DELETE_CONSUMER = "DELETE FROM consumers WHERE name = ?"


# -- rows ------------------------------------------------------------------------------------


def _optional(value: object, kind: type) -> bool:
    return value is None or type(value) is kind


def consumer_of(row: Sequence[Any], path: Path) -> ConsumerState:
    """A ``consumers`` row (with its parked count) as a :class:`ConsumerState`.

    Raises:
        StorageError: the row does not hold the types chanlog writes (changed outside it).
    """
    name, position, subjects, handled, parked, holder, expires, error, updated = row
    try:
        patterns = orjson.loads(subjects) if type(subjects) is str else None
    except orjson.JSONDecodeError:
        patterns = None
    if not (
        type(name) is str
        and type(position) is int
        and type(handled) is int
        and type(parked) is int
        and isinstance(patterns, list)
        and all(type(pattern) is str for pattern in patterns)
        and _optional(holder, str)
        and _optional(expires, float)
        and _optional(error, str)
        and type(updated) is float
    ):
        raise StorageError(
            f"{path}: damaged consumer row {short(name)}: {short(tuple(row), 200)} does not "
            "hold the types chanlog writes; the file was changed outside chanlog"
        )
    return ConsumerState(
        name, position, tuple(patterns), handled, parked, holder, expires, error, updated
    )


def parked_of(row: Sequence[Any], path: Path) -> ParkedRecord:
    """A ``parked_records`` row (led by its consumer's name) as a :class:`ParkedRecord`.

    Raises:
        StorageError: the row does not hold the types chanlog writes.
    """
    consumer, position, event_id, event_type, attempts, error, parked_at, replay = row
    if not (
        type(position) is int
        and type(event_id) is str
        and type(event_type) is str
        and type(attempts) is int
        and type(error) is str
        and type(parked_at) is float
        and replay in (0, 1)
    ):
        raise StorageError(
            f"{path}: damaged parked record of consumer {short(consumer)}: "
            f"{short(tuple(row), 200)}; the file was changed outside chanlog"
        )
    return ParkedRecord(
        consumer, position, event_id, event_type, attempts, error, parked_at, bool(replay)
    )


def _parked_rows(
    connection: sqlite3.Connection,
    name: str,
    offsets: Sequence[int] | None,
    every: str,
    each: str,
) -> int:
    """Run ``every`` on all of ``name``'s parked records (``offsets`` is ``None``) or
    ``each`` on those at ``offsets``; return how many rows it changed."""
    if offsets is None:
        return connection.execute(every, (name,)).rowcount
    chosen = [(name, offset) for (offset,) in _offsets(offsets)]
    return connection.executemany(each, chosen).rowcount if chosen else 0


def _offsets(offsets: Sequence[int]) -> list[tuple[int]]:
    """Each offset that could be parked, once (others cannot match a row)."""
    chosen = {offset for offset in offsets if type(offset) is int and 0 <= offset <= MAX_POSITION}
    return [(offset,) for offset in sorted(chosen)]


# -- writes, on the writing connection inside its transaction --------------------------------


def _state_in(connection: sqlite3.Connection, name: str, path: Path) -> ConsumerState | None:
    row = connection.execute(SELECT_CONSUMER, (name,)).fetchone()
    return None if row is None else consumer_of(row, path)


def _existing_in(connection: sqlite3.Connection, name: str, path: Path) -> ConsumerState:
    state = _state_in(connection, name, path)
    if state is None:
        raise NotFound(f"no consumer named {name!r}")
    return state


def _errors(connection: sqlite3.Connection, name: str, offsets: Sequence[int] | None) -> list[str]:
    """The errors of ``name``'s parked records at ``offsets`` (``None``: all of them)."""
    if offsets is None:
        return [error for (error,) in connection.execute(PARKED_ERRORS, (name,))]
    found = (
        connection.execute(PARKED_ERROR, (name, offset)).fetchone()
        for (offset,) in _offsets(offsets)
    )
    return [row[0] for row in found if row is not None]


def _ends(
    connection: sqlite3.Connection,
    name: str,
    last_error: str | None,
    error: str | None,
    offsets: Sequence[int] | None,
) -> bool:
    """Whether a write carrying ``error`` and removing the parked records at ``offsets``
    ends the last error (:func:`~chanlog.backends.consumer_store.ends_last_error`); asked
    before the records are removed, and only of those when it could be."""
    if error is not None or last_error is None:
        return ends_last_error(last_error, error, ())
    return offsets != () and ends_last_error(last_error, None, _errors(connection, name, offsets))


def _apply(
    connection: sqlite3.Connection, move: PositionMove, now: float, last_error: str | None
) -> None:
    """Apply a checked move: parked rows (replacing one at the same offset, stamped ``now``),
    replayed ones removed, then the position, count, lease and error (``last_error``: the
    consumer's before the move)."""
    name = move.consumer
    if move.parked:
        connection.executemany(
            PARK,
            [
                (name, r.offset, r.event_id, r.event_type, r.attempts, r.error, now, int(r.replay))
                for r in move.parked
            ],
        )
    ended = _ends(connection, name, last_error, move.error, move.unparked)
    if move.unparked:
        connection.executemany(UNPARK, [(name, offset) for (offset,) in _offsets(move.unparked)])
    connection.execute(
        MOVE, (move.position, move.handled, now + move.lease_ttl, move.error, now, name)
    )
    if ended:
        connection.execute(FALL_BACK, (name, name))


def move_in_transaction(
    connection: sqlite3.Connection, move: PositionMove, path: Path, now: float | None = None
) -> None:
    """Check ``move`` against the consumer's state and apply it, on ``connection`` inside its
    write transaction: it commits with that transaction or rolls back with it.

    Raises:
        NotFound, LeaseHeld, InvalidArgument: the rules refuse it (nothing was changed).
        sqlite3.Error: for the caller to translate.
    """
    now = time.time() if now is None else now
    state = check_move(move, _state_in(connection, move.consumer, path), now)
    _apply(connection, move, now, state.last_error)


class SqliteConsumers:
    """The consumers of one ``sqlite`` backend (the façade's consumer methods delegate here).

    Args:
        connections: the backend's connections.
        tables: whether the file has the consumer tables (False for a read-only handle on a
            version 2 file: then the tables are looked for at each read until found).
    """

    def __init__(self, connections: SqliteConnections, *, tables: bool = True) -> None:
        self._connections = connections
        self._path: Path = connections.options.path
        self._tables = tables

    def clock(self) -> float:
        """Unix seconds now: this process's clock, which writes and judges the leases (the
        processes sharing a file share a machine)."""
        return time.time()

    # -- reads -------------------------------------------------------------------------------

    def _has_tables(self) -> bool:
        if not self._tables:
            found = self._connections.query("look for the consumer tables", HAS_TABLES, ())
            self._tables = bool(found[0][0])
        return self._tables

    def state(self, name: str) -> ConsumerState | None:
        """The consumer ``name``, or ``None``."""
        if not self._has_tables():
            return None
        rows = self._connections.query("read a consumer", SELECT_CONSUMER, (name,))
        return consumer_of(rows[0], self._path) if rows else None

    def states(self) -> list[ConsumerState]:
        """Every consumer, by name."""
        if not self._has_tables():
            return []
        rows = self._connections.query("read the consumers", SELECT_CONSUMERS, ())
        return [consumer_of(row, self._path) for row in rows]

    def parked(self, name: str) -> list[ParkedRecord]:
        """The consumer's parked records, by offset (:class:`NotFound` without it)."""
        rows = (
            self._connections.query("read parked records", SELECT_PARKED, (name,))
            if self._has_tables()
            else []
        )
        if not rows:
            raise NotFound(f"no consumer named {name!r}")
        return [parked_of(row, self._path) for row in rows if row[1] is not None]

    # -- writes ------------------------------------------------------------------------------

    def _write(self, action: str, operation: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Run ``operation(connection, now)`` in a ``BEGIN IMMEDIATE`` transaction of its own
        (or in this thread's write transaction, when one is open), ``now`` read under the
        writer lock; commit, or roll back when it raises."""
        connections = self._connections
        with connections.write_lock:
            connection = connections.writer  # refuses a closed or read-only backend
            if connection.in_transaction:
                return self._run(action, operation, connection)
            connections.guard("take the writer lock", lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                result = self._run(action, operation, connection)
                connections.guard("commit", lambda: connection.execute("COMMIT"))
            except BaseException:
                connections.roll_back(connection)
                raise
            return result

    def _run(
        self,
        action: str,
        operation: Callable[[sqlite3.Connection, float], _T],
        connection: sqlite3.Connection,
    ) -> _T:
        try:
            return operation(connection, time.time())
        except sqlite3.Error as exc:
            raise self._connections.storage_error(action, exc) from exc

    def ensure(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        """Create ``name`` at ``position`` unless it exists; record ``subjects`` either way."""
        check_position(name, position)
        patterns = tuple(subjects)
        encoded = orjson.dumps(list(patterns)).decode()
        path = self._path

        def ensure(connection: sqlite3.Connection, now: float) -> ConsumerState:
            state = _state_in(connection, name, path)
            if state is None:
                connection.execute(INSERT_CONSUMER, (name, position, encoded, now))
                return ConsumerState(name, position, patterns, updated_at=now)
            if state.subjects != patterns:
                connection.execute(SET_SUBJECTS, (encoded, now, name))
                return attrs.evolve(state, subjects=patterns, updated_at=now)
            return state

        return self._write("register a consumer", ensure)

    def acquire(self, name: str, holder: str, ttl: float) -> ConsumerState:
        """Take or renew the lease (:class:`~chanlog.errors.LeaseHeld` while another's runs)."""
        path = self._path

        def acquire(connection: sqlite3.Connection, now: float) -> ConsumerState:
            state = _existing_in(connection, name, path)
            error = held_elsewhere(state, holder, now)
            if error is not None:
                raise error
            connection.execute(SET_LEASE, (holder, now + ttl, name))
            return attrs.evolve(state, lease_holder=holder, lease_expires_at=now + ttl)

        return self._write("take a consumer's lease", acquire)

    def release(self, name: str, holder: str) -> None:
        """Give the lease up if ``holder`` holds it."""
        path = self._path

        def release(connection: sqlite3.Connection, now: float) -> None:
            if _existing_in(connection, name, path).lease_holder == holder:
                connection.execute(SET_LEASE, (None, None, name))

        self._write("release a consumer's lease", release)

    def move(self, move: PositionMove) -> None:
        """Check and apply ``move`` in a transaction of its own."""
        path = self._path
        self._write(
            "move a consumer",
            lambda connection, now: move_in_transaction(connection, move, path, now),
        )

    def reset(self, name: str, position: int) -> ConsumerState:
        """Set the position, refused while a lease runs; parked records stay."""
        check_position(name, position)
        path = self._path

        def reset(connection: sqlite3.Connection, now: float) -> ConsumerState:
            state = _existing_in(connection, name, path)
            error = held_elsewhere(state, None, now)
            if error is not None:
                raise error
            connection.execute(RESET, (position, now, name))
            return attrs.evolve(state, position=position, updated_at=now)

        return self._write("reset a consumer", reset)

    def request_replay(self, name: str, offsets: Sequence[int] | None) -> int:
        """Mark parked records (``None``: all) for replay; return how many."""
        path = self._path

        def mark(connection: sqlite3.Connection, now: float) -> int:
            _existing_in(connection, name, path)
            return _parked_rows(connection, name, offsets, REPLAY_ALL, REPLAY)

        return self._write("request a replay", mark)

    def drop(self, name: str, offsets: Sequence[int] | None) -> int:
        """Forget parked records (``None``: all); return how many."""
        path = self._path

        def drop(connection: sqlite3.Connection, now: float) -> int:
            state = _existing_in(connection, name, path)
            ended = _ends(connection, name, state.last_error, None, offsets)
            dropped = _parked_rows(connection, name, offsets, UNPARK_ALL, UNPARK)
            connection.execute(TOUCH, (now, name))
            if ended:
                connection.execute(FALL_BACK, (name, name))
            return dropped

        return self._write("drop parked records", drop)

    def delete(self, name: str) -> bool:
        """Remove the consumer and its parked records; False when it did not exist."""

        def delete(connection: sqlite3.Connection, now: float) -> bool:
            connection.execute(UNPARK_ALL, (name,))
            return connection.execute(DELETE_CONSUMER, (name,)).rowcount > 0

        return self._write("delete a consumer", delete)
