"""Why a consumer's records wait, written where another process reads it (ADR 0048,
ADR 0058); and a failed try described as the runner writes it.

A handler that is behind for a reason of its own while it raises nothing (a relay whose
broker is away, :class:`chanlog.bus.ReportsFailure`) says so through ``failure()``; a
record that failed and waits out a backoff before its next try is behind too, with no
record parked yet. ``chanlog run`` shows either, being in the same process; ``chanlog
consumers`` reads only what the backend keeps. So the runner's lease heartbeat, right after
each renewal, records the failure that stands as the consumer's last error with a move that
does not advance the position, and clears it once it no longer stands. The heartbeat, not
the runner's own thread, because that thread may be the one waiting inside the handler (a
relay's window full while its broker is away) for as long as the outage lasts; and one
writer of standing failures cannot wipe what another wrote.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable

from chanlog.bus.handlers import Handler, ReportsFailure
from chanlog.bus.lease import Lease
from chanlog.bus.progress import RunnerStats
from chanlog.errors import InvalidArgument, StorageError
from chanlog.records import ParkedRecord, PositionMove, RecordedEvent, storable_error

__all__ = ["FailureRecorder", "describe_failure", "parked_record", "record_error", "retry_error"]

logger = logging.getLogger("chanlog.bus")

_PASSES = 3  # looks per beat while what stands changes under it; the next beat goes on


def describe_failure(exc: BaseException) -> str:
    """One line for a failed try: the exception and where it was raised, as every backend
    stores it (:func:`~chanlog.records.storable_error`), so that the runner's log lines say
    what ``chanlog consumers`` shows and hold no NUL."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return storable_error(f"{type(exc).__name__}: {exc}{where}")


def record_error(offset: int, error: str) -> str:
    """A record's error as the runner writes it (a parked record's, the consumer's last
    error): it begins with the record's offset, so ``chanlog consumers`` says which record
    failed without a look at the parked list, and a handler's reason (which names none) is
    told apart from it (ADR 0058)."""
    return f"offset {offset}: {error}"


def parked_record(consumer: str, record: RecordedEvent, attempts: int, error: str) -> ParkedRecord:
    """``record`` parked by ``consumer`` after ``attempts`` tries, the last one failing with
    ``error`` (a :func:`record_error`), logged."""
    logger.error(
        "consumer %s: parked a %s record after %d tries: %s",
        consumer,
        record.event_type,
        attempts,
        error,
    )
    return ParkedRecord(
        consumer, record.offset, record.event_id, record.event_type, attempts, error, time.time()
    )


def retry_error(offset: int, attempt: int, tries: int, error: str) -> str:
    """The error of a record that failed try ``attempt`` of ``tries`` and will be tried
    again: a failure that stands until the record is handled or parked (ADR 0058)."""
    return f"offset {offset}, try {attempt} of {tries} failed, retrying: {error}"


class FailureRecorder:
    """Records the failure that stands now (:meth:`standing`) as the last error of the
    consumer whose lease is ``lease``, when it changes.

    Args:
        handler: the runner's handler (its ``failure()`` is asked when it
            :class:`ReportsFailure`).
        lease: the runner's lease (the consumer, the holder the move must come from).
        stats: the runner's figures (the move stays at their committed position; their
            ``retry`` is the record being retried).
    """

    def __init__(self, handler: Handler, lease: Lease, stats: RunnerStats) -> None:
        self._reports = handler if isinstance(handler, ReportsFailure) else None
        self._lease = lease
        self._stats = stats
        self._recorded: str | None = None
        # A failure whose write raised a StorageError: it may have landed all the same (a
        # connection lost as the database committed), so it is ended like one recorded.
        self._in_doubt: str | None = None

    def standing(self) -> str | None:
        """The failure that stands now: the handler's reason (it says why, where a retry's
        error may only be what that cause made the record raise), else the record being
        retried, else the storage failure the run waits out (a write of it succeeds when
        only some of the storage fails: a read, the runner's commits; ADR 0064); ``None``
        for none."""
        # "" is no reason: written, it would clear a record's error as if it were a reason gone.
        reason = self._reports.failure() if self._reports is not None else None
        stats = self._stats
        return reason or stats.retry or stats.storage_failure

    def adopt(self, last_error: str | None, parked: Iterable[ParkedRecord]) -> None:
        """Take as this recorder's own a last error that no parked record has (a reason or
        a retry written by a runner that stopped or was killed, which no one else would end):
        the next beat ends it unless it still stands. Called when the lease is taken."""
        errors = {record.error for record in parked}
        self._recorded = None if last_error in errors else last_error
        self._in_doubt = None

    def __call__(self) -> None:
        """Record the failure that stands if it is new; once none does, clear the one
        recorded (unless another error was written over it meanwhile: a record's). Raises
        what the backend raises (:class:`~chanlog.errors.LeaseHeld`,
        :class:`~chanlog.errors.StorageError`), for the heartbeat to handle as it handles a
        failed renewal."""
        # A failure written may have ended while it was written (a retried record parked,
        # its error committed first): asked again at once, it is cleared, and the parked
        # record's error, the latest parked, is shown again (ADR 0054).
        for _ in range(_PASSES):
            if not self._record():
                return

    def _record(self) -> bool:
        """One look; True when it wrote a failure (which may already be over)."""
        failure = self.standing()
        recorded = self._recorded
        in_doubt = self._in_doubt
        if failure == recorded and in_doubt is None:
            return False
        if failure is None:
            lease = self._lease
            state = lease.consumers.consumer_state(lease.name)
            written = {recorded, in_doubt} - {None}
            if state is not None and state.last_error in written and not self._move(""):
                return False
            self._recorded = self._in_doubt = None
            return False
        try:
            if not self._move(failure):
                return False
        except StorageError:
            self._in_doubt = failure  # written or not: asked again, ended either way
            raise
        self._recorded, self._in_doubt = failure, None
        return True

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
