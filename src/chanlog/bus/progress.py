"""What a consumer's runner counts: :class:`RunnerStats` since it started, and
:class:`Pending`, what it did since its last commit (committed together)."""

from __future__ import annotations

import time

import attrs

from chanlog.records import ParkedRecord, PositionMove

__all__ = ["Pending", "RunnerStats"]


@attrs.define
class RunnerStats:
    """What one runner did since it started.

    Attributes:
        position: the position it last committed.
        handled: records its handler handled.
        parked: records it parked.
        failures: failed tries (each retry counts).
        last_error: the latest failure, as text.
        retrying: storage is failing: the run waits out a backoff before it tries again.
        retry: the record that failed and will be tried again, as
            ``offset N, try K of M failed, retrying: <error>``; ``None`` once it is
            handled or parked (the lease heartbeat writes it for other processes).
        storage_failure: while ``retrying``, the storage failure it waits out, as
            ``StorageError: <message>`` (the lease heartbeat writes it for other processes
            when it can, ADR 0064); ``None`` otherwise.
    """

    position: int = 0
    handled: int = 0
    parked: int = 0
    failures: int = 0
    last_error: str | None = None
    retrying: bool = False
    retry: str | None = None
    storage_failure: str | None = None


@attrs.define
class Pending:
    """What a runner handled, parked and unparked since its last commit: committed
    together."""

    handled: int = 0
    parked: list[ParkedRecord] = attrs.Factory(list)
    unparked: list[int] = attrs.Factory(list)
    error: str | None = None
    since: float = attrs.Factory(time.monotonic)

    def __bool__(self) -> bool:
        return bool(self.handled or self.parked or self.unparked or self.error)

    def move(self, consumer: str, holder: str, position: int, lease_ttl: float) -> PositionMove:
        """The move of ``consumer`` to ``position`` by the lease ``holder``, with all of this."""
        return PositionMove(
            consumer,
            holder,
            position,
            handled=self.handled,
            lease_ttl=lease_ttl,
            parked=tuple(self.parked),
            unparked=tuple(self.unparked),
            error=self.error,
        )
