"""The memory backend's durable consumers: positions, leases and parked records in dicts,
by the rules of :mod:`chanlog.backends.consumer_store`. It is also the reference the
conformance suite's expectations were written from."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from chanlog.backends.consumer_store import (
    check_move,
    check_position,
    ends_last_error,
    held_elsewhere,
)
from chanlog.errors import NotFound
from chanlog.records import ConsumerState, ParkedRecord, PositionMove

__all__ = ["ConsumerTable"]


def _chosen(parked: dict[int, ParkedRecord], offsets: Sequence[int] | None) -> list[int]:
    """The parked offsets ``offsets`` names (``None``: all), each once, in order: an offset
    named twice is one record, and one that is not parked is ignored."""
    if offsets is None:
        return sorted(parked)
    return sorted({offset for offset in offsets if offset in parked})


def _latest_error(parked: dict[int, ParkedRecord]) -> str | None:
    """The error of the record parked most recently (the highest offset among those parked
    at once), or ``None`` when nothing is parked: what a last error that ended falls back to."""
    if not parked:
        return None
    return max(parked.values(), key=lambda record: (record.parked_at, record.offset)).error


class ConsumerTable:
    """Consumers held in memory (the caller serialises access: the memory backend's lock).

    Args:
        clock: unix seconds now.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._states: dict[str, ConsumerState] = {}
        self._parked: dict[str, dict[int, ParkedRecord]] = {}

    def clock(self) -> float:
        """Unix seconds now, by the clock leases are written and judged with."""
        return self._clock()

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
        check_position(name, position)
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

    def check(self, move: PositionMove, staged: Sequence[PositionMove] = ()) -> None:
        """Refuse ``move`` now if it breaks the rules (see
        :func:`~chanlog.backends.consumer_store.check_move`), judged after the ``staged``
        moves of the same transaction: a second move may not go behind the first."""
        state = self._states.get(move.consumer)
        for earlier in staged:
            if state is not None and earlier.consumer == move.consumer:
                state = attrs.evolve(state, position=earlier.position)
        check_move(move, state, self._clock())

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
            # Stamped with this backend's clock, like every time it keeps (the rules).
            parked[record.offset] = attrs.evolve(record, consumer=move.consumer, parked_at=now)
        removed = [parked.pop(offset).error for offset in move.unparked if offset in parked]
        last_error = move.error or state.last_error
        if ends_last_error(state.last_error, move.error, removed):
            last_error = _latest_error(parked)
        self._states[move.consumer] = attrs.evolve(
            state,
            position=move.position,
            handled=state.handled + move.handled,
            parked=len(parked),
            lease_expires_at=now + move.lease_ttl,
            last_error=last_error,
            updated_at=now,
        )

    def reset(self, name: str, position: int) -> ConsumerState:
        check_position(name, position)
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
        chosen = _chosen(parked, offsets)
        for offset in chosen:
            parked[offset] = attrs.evolve(parked[offset], replay=True)
        return len(chosen)

    def drop(self, name: str, offsets: Sequence[int] | None) -> int:
        state = self._existing(name)
        parked = self._parked[name]
        removed = [parked.pop(offset).error for offset in _chosen(parked, offsets)]
        last_error = state.last_error
        if ends_last_error(last_error, None, removed):
            last_error = _latest_error(parked)
        self._states[name] = attrs.evolve(
            state, parked=len(parked), last_error=last_error, updated_at=self._clock()
        )
        return len(removed)

    def delete(self, name: str) -> bool:
        existed = self._states.pop(name, None) is not None
        self._parked.pop(name, None)
        return existed
