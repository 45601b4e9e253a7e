"""The memory backend's durable consumers: positions, leases and parked records in dicts,
by the rules of :mod:`chanlog.backends.consumer_store`. It is also the reference the
conformance suite's expectations were written from."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from chanlog.errors import InvalidArgument, LeaseHeld, NotFound
from chanlog.records import ConsumerState, ParkedRecord, PositionMove

__all__ = ["ConsumerTable", "check_move", "held_elsewhere"]


def check_move(move: PositionMove, state: ConsumerState | None, now: float) -> ConsumerState:
    """Refuse a move that breaks the rules; return the consumer's current state.

    Raises:
        NotFound: no such consumer.
        LeaseHeld: the mover does not hold an unexpired lease.
        InvalidArgument: the position would go backwards.
    """
    if state is None:
        raise NotFound(f"no consumer named {move.consumer!r}")
    holds = (
        state.lease_holder == move.holder
        and state.lease_expires_at is not None
        and state.lease_expires_at > now
    )
    if not holds:
        raise LeaseHeld(
            f"consumer {move.consumer!r}: runner {move.holder!r} does not hold its lease "
            f"(held by {state.lease_holder!r}); its position was not moved",
            consumer=move.consumer,
            holder=state.lease_holder if _running(state, now) else None,
            expires_at=state.lease_expires_at if _running(state, now) else None,
        )
    if move.position < state.position:
        raise InvalidArgument(
            f"consumer {move.consumer!r}: position {move.position} is behind {state.position}"
        )
    return state


def _running(state: ConsumerState, now: float) -> bool:
    return (
        state.lease_holder is not None
        and state.lease_expires_at is not None
        and state.lease_expires_at > now
    )


def held_elsewhere(state: ConsumerState, holder: str | None, now: float) -> LeaseHeld | None:
    """The error for taking or resetting a consumer whose lease another holder runs."""
    if _running(state, now) and state.lease_holder != holder:
        return LeaseHeld(
            f"consumer {state.name!r} is run by {state.lease_holder!r} until "
            f"{state.lease_expires_at:.3f} (unix time); stop that runner or wait for its "
            "lease to expire",
            consumer=state.name,
            holder=state.lease_holder,
            expires_at=state.lease_expires_at,
        )
    return None


class ConsumerTable:
    """Consumers held in memory (the caller serialises access: the memory backend's lock).

    Args:
        clock: unix seconds now.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[str, ConsumerState] = {}
        self._parked: dict[str, dict[int, ParkedRecord]] = {}

    def get(self, name: str) -> ConsumerState | None:
        return self._states.get(name)

    def all(self) -> list[ConsumerState]:
        return [self._states[name] for name in sorted(self._states)]

    def _existing(self, name: str) -> ConsumerState:
        state = self._states.get(name)
        if state is None:
            raise NotFound(f"no consumer named {name!r}")
        return state

    def ensure(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        if type(position) is not int or position < 0:
            raise InvalidArgument(f"a consumer's position must be an int >= 0, got {position!r}")
        state = self._states.get(name)
        now = self._clock()
        if state is None:
            state = ConsumerState(name, position, tuple(subjects), updated_at=now)
            self._parked[name] = {}
        elif state.subjects != tuple(subjects):
            state = attrs.evolve(state, subjects=tuple(subjects), updated_at=now)
        self._states[name] = state
        return state

    def acquire(self, name: str, holder: str, ttl: float) -> ConsumerState:
        state = self._existing(name)
        now = self._clock()
        error = held_elsewhere(state, holder, now)
        if error is not None:
            raise error
        state = attrs.evolve(state, lease_holder=holder, lease_expires_at=now + ttl)
        self._states[name] = state
        return state

    def release(self, name: str, holder: str) -> None:
        state = self._existing(name)
        if state.lease_holder == holder:
            self._states[name] = attrs.evolve(state, lease_holder=None, lease_expires_at=None)

    def check(self, move: PositionMove) -> None:
        """Refuse ``move`` now if it breaks the rules (see :func:`check_move`)."""
        check_move(move, self._states.get(move.consumer), self._clock())

    def move(self, move: PositionMove) -> None:
        """Check ``move``, then apply it."""
        self.check(move)
        self.apply(move)

    def apply(self, move: PositionMove) -> None:
        """Apply a move already checked (a transaction applies at commit what it checked
        when the move was staged: the commit must not fail half-way)."""
        now = self._clock()
        state = self._states[move.consumer]
        parked = self._parked[move.consumer]
        for record in move.parked:
            parked[record.offset] = record
        for offset in move.unparked:
            parked.pop(offset, None)
        self._states[move.consumer] = attrs.evolve(
            state,
            position=move.position,
            handled=state.handled + move.handled,
            parked=len(parked),
            lease_expires_at=now + move.lease_ttl,
            last_error=state.last_error if move.error is None else move.error,
            updated_at=now,
        )

    def reset(self, name: str, position: int) -> ConsumerState:
        state = self._existing(name)
        now = self._clock()
        error = held_elsewhere(state, None, now)
        if error is not None:
            raise error
        state = attrs.evolve(state, position=position, updated_at=now)
        self._states[name] = state
        return state

    def parked(self, name: str) -> list[ParkedRecord]:
        self._existing(name)
        parked = self._parked[name]
        return [parked[offset] for offset in sorted(parked)]

    def request_replay(self, name: str, offsets: Sequence[int] | None) -> int:
        self._existing(name)
        parked = self._parked[name]
        chosen = sorted(parked) if offsets is None else [o for o in offsets if o in parked]
        for offset in chosen:
            parked[offset] = attrs.evolve(parked[offset], replay=True)
        return len(chosen)

    def drop(self, name: str, offsets: Sequence[int] | None) -> int:
        state = self._existing(name)
        parked = self._parked[name]
        chosen = sorted(parked) if offsets is None else [o for o in offsets if o in parked]
        for offset in chosen:
            del parked[offset]
        self._states[name] = attrs.evolve(state, parked=len(parked), updated_at=self._clock())
        return len(chosen)

    def delete(self, name: str) -> bool:
        existed = self._states.pop(name, None) is not None
        self._parked.pop(name, None)
        return existed
