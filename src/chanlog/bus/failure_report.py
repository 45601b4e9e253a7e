"""Why a handler's records wait, written where another process reads it (ADR 0048).

A handler that is behind for a reason of its own while it raises nothing (a relay whose
broker is away, :class:`chanlog.bus.ReportsFailure`) says so through ``failure()``.
``chanlog run`` shows it, being in the same process; ``chanlog consumers`` reads only what
the backend keeps. So the runner's lease heartbeat, right after each renewal, records a new
reason as the consumer's last error with a move that does not advance the position, and
clears it once the handler says it is gone. The heartbeat, not the runner's own thread,
because that thread may be the one waiting inside the handler (a relay's window full while
its broker is away) for as long as the outage lasts.
"""

from __future__ import annotations

import traceback

from chanlog.bus.handlers import Handler, ReportsFailure
from chanlog.bus.lease import Lease
from chanlog.bus.progress import RunnerStats
from chanlog.errors import InvalidArgument
from chanlog.records import PositionMove

__all__ = ["FailureRecorder", "describe_failure", "record_error"]


def describe_failure(exc: BaseException) -> str:
    """One line for a failed try: the exception and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def record_error(offset: int, error: str) -> str:
    """A record's error as the runner writes it (a parked record's, the consumer's last
    error): it begins with the record's offset, so ``chanlog consumers`` says which record
    failed without a look at the parked list, and a handler's reason (which names none) is
    told apart from it (ADR 0058)."""
    return f"offset {offset}: {error}"


class FailureRecorder:
    """Records ``handler``'s failure as the last error of the consumer whose lease is
    ``lease``, when it changes.

    Args:
        handler: the handler whose ``failure()`` is recorded.
        lease: the runner's lease (the consumer, the holder the move must come from).
        stats: the runner's figures (the move stays at their committed position).
    """

    def __init__(self, handler: ReportsFailure, lease: Lease, stats: RunnerStats) -> None:
        self._handler = handler
        self._lease = lease
        self._stats = stats
        self._recorded: str | None = None

    @classmethod
    def of(cls, handler: Handler, lease: Lease, stats: RunnerStats) -> FailureRecorder | None:
        """The recorder for ``handler``, or ``None`` when it reports no failures."""
        return cls(handler, lease, stats) if isinstance(handler, ReportsFailure) else None

    def __call__(self) -> None:
        """Record the handler's failure if it is new; once it is gone (``None`` or ``""``),
        clear the one recorded (unless another error was written over it meanwhile: a
        record's). Raises what the backend raises (:class:`~chanlog.errors.LeaseHeld`,
        :class:`~chanlog.errors.StorageError`), for the heartbeat to handle as it handles a
        failed renewal."""
        # "" is no reason: written, it would clear a record's error as if it were a reason gone.
        failure = self._handler.failure() or None
        recorded = self._recorded
        if failure == recorded:
            return
        if failure is None:
            lease = self._lease
            assert recorded is not None
            state = lease.consumers.consumer_state(lease.name)
            if state is not None and state.last_error == recorded and not self._move(""):
                return
        elif not self._move(failure):
            return
        self._recorded = failure

    def _move(self, error: str) -> bool:
        """Write ``error`` as the last error (``""``: clear it), the position kept; False
        when the runner committed a later position meanwhile (tried again at the next
        beat)."""
        lease = self._lease
        move = PositionMove(
            lease.name, lease.holder, self._stats.position, lease_ttl=lease.ttl, error=error
        )
        try:
            lease.consumers.move_consumer(move)
        except InvalidArgument:
            return False
        return True
