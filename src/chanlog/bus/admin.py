"""Managing durable consumers without running them: list them with their lag, reset them,
and look at, replay or drop their parked records (what ``chanlog consumers`` does)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import attrs

from chanlog.arguments import items_once
from chanlog.backends.consumer_store import KeepsConsumers, ReadsConsumerClock, lease_running
from chanlog.bus.lease import holder_gone, release_if_gone
from chanlog.bus.source import BusStore
from chanlog.bus.spec import check_start
from chanlog.bus.subjects import SubjectFilter
from chanlog.errors import InvalidArgument, LeaseHeld, NotFound, StorageError
from chanlog.reading import check_offset
from chanlog.records import ConsumerState, ParkedRecord

__all__ = ["ConsumerAdmin", "ConsumerInfo"]


@attrs.frozen
class ConsumerInfo:
    """A consumer's state with what it means against the log now.

    Attributes:
        state: as its backend keeps it.
        head: the length of the log when this was read.
        lag: records at or after its position that match its subjects (not yet handled).
        running: whether a runner's lease is live (not when its holder's process is gone:
            a runner on this machine killed without giving it up, ADR 0045).
    """

    state: ConsumerState
    head: int
    lag: int
    running: bool

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.state.name

    def as_dict(self) -> dict[str, object]:
        """Plain values (what ``chanlog consumers --json`` prints); ``handled`` is the
        consumer's total, by every runner since it was created."""
        state = self.state
        return {
            "name": state.name,
            "position": state.position,
            "head": self.head,
            "lag": self.lag,
            "handled": state.handled,
            "parked": state.parked,
            "subjects": list(state.subjects),
            "running": self.running,
            "lease_holder": state.lease_holder if self.running else None,
            "lease_expires_at": state.lease_expires_at if self.running else None,
            "last_error": state.last_error,
            "updated_at": state.updated_at,
        }


class ConsumerAdmin:
    """The durable consumers of one store.

    Args:
        store: the store whose backend keeps them.
        subject_filter: compiles a consumer's patterns for this node (to count its lag).
    """

    def __init__(
        self, store: BusStore, subject_filter: Callable[[Sequence[str]], SubjectFilter]
    ) -> None:
        self._store = store
        self._filter = subject_filter

    def keeper(self) -> KeepsConsumers:
        """The backend, which keeps the consumers (:class:`~chanlog.errors.StorageError`
        when it cannot)."""
        backend = self._store.backend
        if not isinstance(backend, KeepsConsumers):
            raise StorageError(f"the {backend.name} backend keeps no consumers")
        return backend

    def states(self) -> list[ConsumerState]:
        """Every consumer's state, by name (none for a backend that keeps none)."""
        backend = self._store.backend
        return backend.consumer_states() if isinstance(backend, KeepsConsumers) else []

    def state(self, name: str) -> ConsumerState:
        """One consumer's state; :class:`~chanlog.errors.NotFound` when there is none."""
        backend = self._store.backend
        state = backend.consumer_state(name) if isinstance(backend, KeepsConsumers) else None
        if state is None:
            known = ", ".join(state.name for state in self.states()) or "none"
            raise NotFound(f"no consumer named {name!r} (consumers: {known})")
        return state

    def info(self, name: str) -> ConsumerInfo:
        """One consumer with its lag."""
        return self._info(self.state(name), self._now())

    def infos(self) -> list[ConsumerInfo]:
        """Every consumer with its lag."""
        states = self.states()
        now = self._now()
        return [self._info(state, now) for state in states]

    def _now(self) -> float:
        """The time by the clock the backend judges leases with (ReadsConsumerClock: the
        database server's, for PostgreSQL), else by this machine's."""
        backend = self._store.backend
        return backend.consumer_clock() if isinstance(backend, ReadsConsumerClock) else time.time()

    def _info(self, state: ConsumerState, now: float) -> ConsumerInfo:
        head = len(self._store)
        holder = state.lease_holder
        # A lease whose holder is gone is taken over at once (ADR 0045): it runs no more.
        running = lease_running(state, now) and not (holder is not None and holder_gone(holder))
        return ConsumerInfo(state, head, self.lag(state, head), running)

    def lag(self, state: ConsumerState, head: int | None = None) -> int:
        """Records in ``[position, head)`` that match the consumer's subjects."""
        end = len(self._store) if head is None else head
        if state.position >= end:
            return 0
        subjects = self._filter(state.subjects)
        if subjects.everything():
            return end - state.position
        accepts = subjects.accepts
        return sum(
            1
            for stored in self._store.backend.read(state.position, end)
            if accepts(stored.event_type, stored.streams)
        )

    def reset(self, name: str, to: str | int) -> ConsumerState:
        """Move a consumer to ``"earliest"``, ``"latest"`` or an offset (backwards too:
        what it feeds is rebuilt from there). Refused while a runner holds it.

        Raises:
            NotFound: no such consumer.
            InvalidArgument: ``to`` is not a start, or is beyond the end of the log.
            LeaseHeld: a runner holds it.
        """
        self.state(name)
        start = check_start(to)
        head = len(self._store)
        if start == "earliest":
            position = 0
        elif start == "latest":
            position = head
        else:
            assert isinstance(start, int)
            if start > head:
                raise InvalidArgument(
                    f"cannot reset {name!r} to {start}: beyond the end of the log ({head})"
                )
            position = start
        return self._reset(name, position)

    def _reset(self, name: str, position: int) -> ConsumerState:
        """Reset, taking the lease over from a runner whose process is gone (ADR 0045)."""
        keeper = self.keeper()
        try:
            return keeper.reset_consumer(name, position)
        except LeaseHeld as held:
            if not release_if_gone(keeper, name, held.holder):
                raise
        return keeper.reset_consumer(name, position)

    def parked(self, name: str) -> list[ParkedRecord]:
        """The consumer's parked records, by offset."""
        self.state(name)
        return self.keeper().parked_records(name)

    def replay(self, name: str, offsets: Iterable[int] | None = None) -> int:
        """Ask the consumer's runner to hand parked records (``None``: all) to its handler
        again; return how many were marked.

        Raises:
            NotFound: no such consumer.
            InvalidArgument: ``offsets`` is not a list of offsets (nothing is marked).
        """
        checked = _offsets(offsets)
        self.state(name)
        return self.keeper().request_replay(name, checked)

    def drop(self, name: str, offsets: Iterable[int] | None = None) -> int:
        """Forget parked records (``None``: all); return how many were dropped.

        Raises:
            NotFound: no such consumer.
            InvalidArgument: ``offsets`` is not a list of offsets (nothing is dropped).
        """
        checked = _offsets(offsets)
        self.state(name)
        return self.keeper().drop_parked(name, checked)

    def delete(self, name: str) -> None:
        """Remove a consumer and its parked records.

        Raises:
            NotFound: no such consumer.
            LeaseHeld: a runner holds it.
        """
        state = self.state(name)
        # A reset to where it is changes nothing but is refused, by the backend's own clock,
        # while a runner's lease runs.
        self._reset(name, state.position)
        self.keeper().delete_consumer(name)


def _offsets(offsets: object) -> tuple[int, ...] | None:
    """``offsets`` read once (a backend may walk them twice) and checked."""
    if offsets is None:
        return None
    checked = tuple(
        items_once(
            offsets, lambda: f"offsets must be a list of offsets (or None: all), got {offsets!r}"
        )
    )
    for offset in checked:
        check_offset("offsets", offset)
    return checked
