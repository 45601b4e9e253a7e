"""Durable consumers' state, kept by the backend next to the log (DESIGN section 10).

Three optional capabilities, like those in :mod:`chanlog.backends.capabilities`:

- :class:`KeepsConsumers` on a backend: positions, leases and parked records. The memory,
  sqlite and postgres backends have it; without it a store has no durable consumers
  (:meth:`chanlog.EventStore.consumer` raises :class:`~chanlog.errors.StorageError`).
- :class:`MovesConsumersInTransaction` on a write transaction: a consumer's position
  commits in the same transaction as the records its handler appended (effectively once).
  Without it, a handler's appends commit first and the position right after them: a crash
  in between hands the record to the handler again, and its appends are found to be
  already in the log (idempotent by event id), so nothing is appended twice either way.
- :class:`ReadsConsumerClock` on a backend that keeps consumers: the clock its leases are
  written and judged by, so that ``chanlog consumers`` and ``chanlog run`` say whether a
  lease runs by that clock, not by the clock of the machine they run on. Without it they
  use the local clock. The memory, sqlite and postgres backends have it.

The rules every implementation follows (the conformance suite checks each of them):

- Times (``lease_expires_at``, ``updated_at``, ``parked_at``) are unix seconds read from
  the backend's own clock (the database server's, for a shared database), so runners on
  machines with skewed clocks agree on when a lease expires.
- A lease is held by one holder until it expires. Taking it when it is free, expired or
  already ours succeeds (and renews it); taking it while another holder's lease runs
  raises :class:`~chanlog.errors.LeaseHeld` naming that holder and its expiry.
- A position moves only by its lease holder, only forward, and atomically with what the
  move carries (the handled count, parked records, replayed ones removed, the last error):
  all of it or none. A move by anyone else raises :class:`~chanlog.errors.LeaseHeld`.
- The last error is a failure that still stands (ADR 0054): a move's error becomes it; a
  move whose error is ``""`` (a handler's reason gone) ends it, and so does a move without
  an error (``None``) or :meth:`KeepsConsumers.drop_parked` that takes off the parked list
  a record whose error it is. An ended last error becomes the error of the record parked
  most recently (``parked_at``, then the highest offset) among those still parked, or
  ``None`` (:func:`ends_last_error`).
- Resetting a consumer is refused while another holder's lease runs (stop it first).
- Every method that writes raises :class:`~chanlog.errors.StorageError` on a backend
  opened read-only, and :class:`~chanlog.errors.NotFound` for a consumer that does not
  exist (but :meth:`KeepsConsumers.ensure_consumer`, which creates it).

The functions at the end state the lease and move rules once, as code, for implementations
to share: :func:`check_move`, :func:`held_elsewhere` and :func:`check_position` take the
state and the backend's ``now`` and raise the errors above with the same messages whichever
backend keeps the consumer.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

from chanlog.errors import InvalidArgument, LeaseHeld, NotFound
from chanlog.records import ConsumerState, ParkedRecord, PositionMove

__all__ = [
    "ConsumerTable",
    "KeepsConsumers",
    "KeepsConsumersThrough",
    "MovesConsumersInTransaction",
    "ReadsConsumerClock",
    "check_move",
    "check_position",
    "ends_last_error",
    "held_elsewhere",
    "lease_running",
]


@runtime_checkable
class KeepsConsumers(Protocol):
    """A backend that keeps durable consumers' positions, leases and parked records."""

    def consumer_state(self, name: str) -> ConsumerState | None:
        """The consumer ``name``, or ``None`` when it does not exist."""
        ...

    def consumer_states(self) -> list[ConsumerState]:
        """Every consumer, by name."""
        ...

    def ensure_consumer(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        """Create the consumer at ``position`` unless it exists; record ``subjects`` as
        its patterns either way (a changed configuration); return its state."""
        ...

    def acquire_lease(self, name: str, holder: str, ttl: float) -> ConsumerState:
        """Take (or renew) the consumer's lease for ``ttl`` seconds from now; return the
        state with the lease. Raises :class:`~chanlog.errors.LeaseHeld` while another
        holder's lease runs."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` holds it (otherwise do nothing)."""
        ...

    def move_consumer(self, move: PositionMove) -> None:
        """Apply ``move`` atomically (see the module's rules)."""
        ...

    def reset_consumer(self, name: str, position: int) -> ConsumerState:
        """Set the position to ``position`` (any offset, backwards too), refused while
        another holder's lease runs; parked records stay. Return the new state."""
        ...

    def parked_records(self, name: str) -> list[ParkedRecord]:
        """The consumer's parked records, by offset."""
        ...

    def request_replay(self, name: str, offsets: Sequence[int] | None = None) -> int:
        """Mark parked records (``None``: all) to be handed to the handler again; return
        how many were marked. An offset that is not parked is ignored."""
        ...

    def drop_parked(self, name: str, offsets: Sequence[int] | None = None) -> int:
        """Forget parked records (``None``: all); return how many were dropped."""
        ...

    def delete_consumer(self, name: str) -> bool:
        """Remove the consumer and its parked records; False when it did not exist."""
        ...


@runtime_checkable
class MovesConsumersInTransaction(Protocol):
    """A write transaction that commits a consumer's move with its records."""

    def move_consumer(self, move: PositionMove) -> None:
        """Apply ``move`` when the transaction commits, with its records, by the rules of
        :meth:`KeepsConsumers.move_consumer` (checked now: a refused move raises here and
        the caller rolls the transaction back)."""
        ...


@runtime_checkable
class ReadsConsumerClock(Protocol):
    """A backend that tells the time by the clock its consumers' leases are written and
    judged with (the database server's, for a shared database)."""

    def consumer_clock(self) -> float:
        """Unix seconds now, by that clock."""
        ...


# -- the rules, for implementations ----------------------------------------------------------


def lease_running(state: ConsumerState, now: float) -> bool:
    """Whether somebody holds ``state``'s lease at ``now`` (the backend's clock)."""
    return (
        state.lease_holder is not None
        and state.lease_expires_at is not None
        and state.lease_expires_at > now
    )


def ends_last_error(last_error: str | None, error: str | None, removed: Collection[str]) -> bool:
    """Whether a write ends the failure a consumer's ``last_error`` describes: it carries
    the error ``""`` (a reason withdrawn), or carries none (``error`` is ``None``) and takes
    off the parked list records whose errors are ``removed``, one of them the last error.
    The last error is then the error of the record parked most recently among those still
    parked, or ``None`` (see the module's rules)."""
    if error is not None:
        return error == ""
    return last_error is not None and last_error in removed


def check_position(name: str, position: object) -> int:
    """Return ``position`` if it is a position a consumer may be created or reset at.

    Raises:
        InvalidArgument: not an int >= 0.
    """
    if type(position) is not int or position < 0:
        raise InvalidArgument(
            f"consumer {name!r}: a position must be an int >= 0, got {position!r}"
        )
    return position


def held_elsewhere(state: ConsumerState, holder: str | None, now: float) -> LeaseHeld | None:
    """The error for taking (``holder``) or resetting (``None``) a consumer whose lease
    another holder runs at ``now``; ``None`` when nobody else does."""
    if lease_running(state, now) and state.lease_holder != holder:
        expires = state.lease_expires_at
        assert expires is not None  # a running lease has an end
        until = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        return LeaseHeld(
            f"consumer {state.name!r} is run by {state.lease_holder!r}: its lease runs "
            f"{expires - now:.1f} s more, until "
            f"{until.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} by the "
            "backend's clock; stop that runner or wait for its lease to expire",
            consumer=state.name,
            holder=state.lease_holder,
            expires_at=state.lease_expires_at,
        )
    return None


def check_move(move: PositionMove, state: ConsumerState | None, now: float) -> ConsumerState:
    """Refuse a move that breaks the rules at ``now``; return the consumer's state.

    Raises:
        NotFound: no such consumer (``state`` is ``None``).
        LeaseHeld: the mover does not hold an unexpired lease; the error names whoever
            holds one (``None``: nobody).
        InvalidArgument: the position would go backwards.
    """
    if state is None:
        raise NotFound(f"no consumer named {move.consumer!r}")
    running = lease_running(state, now)
    if not (running and state.lease_holder == move.holder):
        raise LeaseHeld(
            f"consumer {move.consumer!r}: runner {move.holder!r} does not hold its lease "
            f"(held by {state.lease_holder if running else None!r}); its position was not moved",
            consumer=move.consumer,
            holder=state.lease_holder if running else None,
            expires_at=state.lease_expires_at if running else None,
        )
    if move.position < state.position:
        raise InvalidArgument(
            f"consumer {move.consumer!r}: position {move.position} is behind {state.position}"
        )
    return state


class ConsumerTable(Protocol):
    """Where a backend keeps its consumers: the operations of :class:`KeepsConsumers`
    under shorter names (the SQLite and PostgreSQL backends each have one)."""

    def state(self, name: str) -> ConsumerState | None: ...

    def states(self) -> list[ConsumerState]: ...

    def ensure(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState: ...

    def acquire(self, name: str, holder: str, ttl: float) -> ConsumerState: ...

    def release(self, name: str, holder: str) -> None: ...

    def move(self, move: PositionMove) -> None: ...

    def reset(self, name: str, position: int) -> ConsumerState: ...

    def parked(self, name: str) -> list[ParkedRecord]: ...

    def request_replay(self, name: str, offsets: Sequence[int] | None) -> int: ...

    def drop(self, name: str, offsets: Sequence[int] | None) -> int: ...

    def delete(self, name: str) -> bool: ...

    def clock(self) -> float:
        """Unix seconds now, by the clock the table writes and judges leases with."""
        ...


class KeepsConsumersThrough:
    """A backend base class: :class:`KeepsConsumers` (and :class:`ReadsConsumerClock`)
    by handing every operation to its :attr:`consumer_table` (set by the backend's
    ``__init__``)."""

    consumer_table: ConsumerTable
    """Where the consumers are kept."""

    def consumer_clock(self) -> float:
        """Unix seconds now, by the clock the consumer table judges leases with (the local
        clock for a table that has no ``clock``: one written before tables told the time)."""
        clock = getattr(self.consumer_table, "clock", None)
        return time.time() if clock is None else float(clock())

    def consumer_state(self, name: str) -> ConsumerState | None:
        """The consumer ``name``, or ``None`` (see the module's rules)."""
        return self.consumer_table.state(name)

    def consumer_states(self) -> list[ConsumerState]:
        """Every consumer, by name."""
        return self.consumer_table.states()

    def ensure_consumer(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        """Create the consumer unless it exists; record its subjects either way."""
        return self.consumer_table.ensure(name, position, subjects)

    def acquire_lease(self, name: str, holder: str, ttl: float) -> ConsumerState:
        """Take or renew the consumer's lease for ``ttl`` seconds."""
        return self.consumer_table.acquire(name, holder, ttl)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up, if ``holder`` holds it."""
        self.consumer_table.release(name, holder)

    def move_consumer(self, move: PositionMove) -> None:
        """Apply ``move`` atomically, in a transaction of its own."""
        self.consumer_table.move(move)

    def reset_consumer(self, name: str, position: int) -> ConsumerState:
        """Set the position, refused while another holder's lease runs."""
        return self.consumer_table.reset(name, position)

    def parked_records(self, name: str) -> list[ParkedRecord]:
        """The consumer's parked records, by offset."""
        return self.consumer_table.parked(name)

    def request_replay(self, name: str, offsets: Sequence[int] | None = None) -> int:
        """Mark parked records (``None``: all) for replay; return how many."""
        return self.consumer_table.request_replay(name, offsets)

    def drop_parked(self, name: str, offsets: Sequence[int] | None = None) -> int:
        """Forget parked records (``None``: all); return how many."""
        return self.consumer_table.drop(name, offsets)

    def delete_consumer(self, name: str) -> bool:
        """Remove the consumer and its parked records; False when it did not exist."""
        return self.consumer_table.delete(name)
