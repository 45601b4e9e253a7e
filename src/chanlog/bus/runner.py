"""The runner of one durable consumer: reads the log from the consumer's position, hands
each matching record to its handler (retrying with backoff, then parking), and commits the
position, under a lease that keeps a second runner of the same name waiting (ADR 0026)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import attrs

from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.bus.backoff import storage_retry_pause
from chanlog.bus.continuity import ReadContinuity
from chanlog.bus.failure_report import (
    FailureRecorder,
    describe_failure,
    parked_record,
    record_error,
    retry_error,
)
from chanlog.bus.handlers import (
    BindsToStore,
    Handler,
    Interruptible,
    SettlesLater,
    TracksPosition,
    describe,
    handler_call,
)
from chanlog.bus.lease import Lease, new_holder
from chanlog.bus.progress import Pending, RunnerStats
from chanlog.bus.settling import StoredPosition
from chanlog.bus.source import BusStore
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.subjects import SubjectFilter
from chanlog.errors import ChanlogError, LeaseHeld, StorageError
from chanlog.failure_log import FailureLog
from chanlog.reading import check_offset
from chanlog.records import ConsumerState, ParkedRecord, PositionMove, RecordedEvent

__all__ = ["ConsumerRunner", "new_holder"]

logger = logging.getLogger("chanlog.bus")

_IDLE_WAIT = 0.5  # seconds between looks at the log while caught up (appends wake it sooner)


class _CommitFailed(Exception):
    """Committing a handler's appends failed, and not by the handler's fault: the store
    failed (a database restarted) or this runner lost its lease. The record stays unhandled,
    neither retried nor parked; :meth:`ConsumerRunner.run` retries or waits for the lease."""

    def __init__(self, error: StorageError | LeaseHeld) -> None:
        super().__init__(str(error))
        self.error = error


class _Stopped(Exception):
    """The runner was asked to stop while a record was in hand and not yet handled."""


class ConsumerRunner:
    """Runs one durable consumer of ``store`` (see :meth:`chanlog.EventStore.consumer`).

    Args:
        store: the store whose log it reads and whose backend keeps its position.
        spec: the consumer's definition.
        handler: what each matching record is handed to.
        subjects: ``spec.subjects`` compiled for the store's node.
        holder: this runner's identity in the lease (default: host, pid, nonce).
    """

    def __init__(
        self,
        store: BusStore,
        spec: ConsumerSpec,
        handler: Handler,
        subjects: SubjectFilter,
        *,
        holder: str | None = None,
    ) -> None:
        backend = store.backend
        if not isinstance(backend, KeepsConsumers):
            raise StorageError(
                f"the {backend.name} backend keeps no consumer positions (it lacks the "
                "KeepsConsumers capability), so it cannot run durable consumers"
            )
        self.store = store
        self.spec = spec
        self._lease = Lease(backend, spec.name, holder or new_holder(), spec.lease_ttl)
        self._consumers: KeepsConsumers = backend
        self._call = handler_call(store, handler, spec.name, f"{spec.name} ({describe(handler)})")
        self._filter = subjects
        # Asked at every commit: a protocol check costs microseconds, so it is made once.
        self._settles = handler if isinstance(handler, SettlesLater) else None
        self.stats = RunnerStats()
        self._pending = Pending()
        self._position = 0
        # Asked when this runner's own position cannot be trusted (ADR 0042, ADR 0043).
        self._stored = StoredPosition(backend, spec.name)
        self._continuity = ReadContinuity()
        self._started = False
        self._bound = False
        self._closed = False  # a run ends (and never takes the lease back) once closed
        # Parked records the runner will examine again (a reset moved it below them): one
        # handled now leaves the parked list, or a replay would hand it over a second time.
        self._parked_ahead: set[int] = set()
        # Written at each lease renewal: chanlog consumers then says why records wait.
        self._record_failure = FailureRecorder(self._call.handler, self._lease, self.stats)

    @property
    def handler(self) -> Handler:
        """What each matching record is handed to."""
        return self._call.handler

    def failure(self) -> str | None:
        """The failure that stands now: the handler's reason, else the record being retried
        (what the lease heartbeat writes as the last error, ADR 0058)."""
        return self._record_failure.standing()

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.spec.name

    @property
    def holder(self) -> str:
        """This runner's identity in the lease (host, pid and a nonce by default)."""
        return self._lease.holder

    @property
    def started(self) -> bool:
        """True while the runner holds the consumer's lease: not once a renewal found it
        taken by another runner, though this runner's thread, inside a handler, has not
        seen it yet (``chanlog run`` then shows the consumer waiting, and who holds it)."""
        return self._started and not self._lease.lost.is_set()

    @property
    def position(self) -> int:
        """The next offset this runner examines."""
        return self._position

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, wait: bool = True, stop: threading.Event | None = None) -> bool:
        """Create the consumer if it is new, take its lease and bind the handler.

        Args:
            wait: while another runner holds the lease, wait for it (polling a few times
                per lease period) instead of raising :class:`~chanlog.errors.LeaseHeld`.
            stop: give up waiting once this is set.

        Returns:
            False when ``stop`` was set before the lease was taken.

        Raises:
            ChanlogError: the runner was closed.
        """
        if self._started:
            return True
        if self._closed:
            raise ChanlogError(f"consumer {self.name!r}: this runner was closed; make another")
        self.spec.ensure(self._consumers, len(self.store))
        state = self._lease.take(wait=wait, stop=stop)
        if state is None:
            return False
        try:
            handler = self._call.handler
            if isinstance(handler, BindsToStore) and not self._bound:
                # Before its position is asked: a handler may check what it holds against the log.
                handler.bind(self.store, self.name)
                self._bound = True
            self._position = self._resume_position(state)
            parked = self._consumers.parked_records(self.name) if state.parked else []
            self._parked_ahead = {p.offset for p in parked if p.offset >= self._position}
            self._record_failure.adopt(state.last_error, parked)
        except BaseException:
            self._lease.release()  # refused: the next runner need not wait out the lease
            raise
        self.stats.position = self._position
        self._started = True
        self._lease.keep(self._record_failure)
        return True

    def _resume_position(self, state: ConsumerState) -> int:
        handler = self._call.handler
        position = state.position
        if isinstance(handler, TracksPosition):
            own = handler.position(self.name)
            if own is not None and own > (length := len(self.store)):
                self._stored.refuse(own, length)  # the log lost records it applied (ADR 0043)
            if own is not None and own > position:
                # The handler applied records whose position commit was lost: skip them.
                self._stored.overtaken(own, position)
                self._consumers.move_consumer(
                    PositionMove(self.name, self.holder, own, lease_ttl=self.spec.lease_ttl)
                )
                position = own
        return position

    def close(self) -> None:
        """Commit what was handled, give the lease up and close the handler. Idempotent. A
        run in progress ends (closed by its handler too): the record in hand comes again."""
        try:
            if self._started and not self._lease.lost.is_set():
                handler = self._call.handler
                if isinstance(handler, SettlesLater) and not handler.settle(self.spec.lease_ttl):
                    logger.warning(
                        "consumer %s: stopping with records not yet durable; they are handed "
                        "over again next time",
                        self.name,
                    )
                self.flush()
        finally:
            self._closed = True
            self._lease.stop_keeping()
            self._started = False
            self._lease.release()  # also one taken but reported failed, or taken after a lapse
            self._call.close()

    def interrupt(self) -> None:
        """Make a handler blocked on something outside (a relay waiting for its broker)
        give up the record in hand, when it :class:`~chanlog.bus.handlers.Interruptible`:
        what a worker calls right after setting its stop event."""
        handler = self._call.handler
        if isinstance(handler, Interruptible):
            handler.interrupt()

    def __enter__(self) -> ConsumerRunner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, stop: threading.Event) -> None:
        """Handle records as they come until ``stop`` is set (then finish the record in
        hand, commit the position and give the lease up).

        Neither a storage failure (a database restarted, a connection dropped) nor a lost lease
        ends the run: the first is retried with backoff (0.1 s doubling to 5 s), the second
        waited out like a lease held at start. What was handled and not committed is handed
        over again (at least once). :meth:`close` ends it too. Any other error ends the run,
        written as the consumer's last error (a record it cannot decode, ADR 0063)."""
        failures = 0  # storage failures in a row
        said = FailureLog(logger, f"consumer {self.name}: its storage")
        try:
            while not stop.is_set() and not self._closed:
                try:
                    if not self.start(stop=stop):
                        return
                    if self.run_once(stop=stop) == 0 and not stop.is_set():
                        # Woken by appends (this process's or another's), else after a pause.
                        self.store.backend.wait(self._position, _IDLE_WAIT)
                    failures = 0
                    self.stats.retrying, self.stats.storage_failure = False, None
                    said.succeeded()
                except LeaseHeld as lost:
                    logger.warning("consumer %s: %s; waiting to take it again", self.name, lost)
                    self._let_go()
                except StorageError as failure:
                    failures += 1
                    pause = storage_retry_pause(failures)
                    self.stats.last_error = self.stats.storage_failure = f"StorageError: {failure}"
                    self.stats.retrying = True
                    said.failed(failure, logging.WARNING)  # once, not every pause
                    if stop.wait(pause):
                        return
        except ChanlogError as failure:  # close() writes why, where `chanlog consumers` looks
            if self._closed:  # closed meanwhile (start() refuses): the end, not a failure
                return
            self._pending.error = f"the run stopped: {type(failure).__name__}: {failure}"
            raise
        finally:
            self.close()

    def _let_go(self) -> None:
        """After the lease was lost: stop renewing it and forget what was not committed (the
        runner holding the lease hands it over again); :meth:`start` waits for the lease."""
        self._lease.stop_keeping()
        self._started = False
        self._pending = Pending()
        self._stored.clear()  # start() reads the stored position again

    def run_once(self, stop: threading.Event | None = None, limit: int | None = None) -> int:
        """Handle what the log holds now (at most ``limit`` records examined, an int >= 0,
        else InvalidArgument); return how many were examined. Commits as its policy says."""
        check_offset("limit", 0 if limit is None else limit)
        self.start()
        self._check_lease()
        self._settle()
        self._replay_parked(stop)
        examined = 0
        head = len(self.store)
        if head < self._position:  # the log lost records (ADR 0043)
            self._pending = Pending()  # so that nothing past the log's end is committed
            self._committed(self._stored.resumed(self._position, head, self._call.handler))
            self._position = self.stats.position
        while self._position < head and (limit is None or examined < limit):
            end = min(head, self._position + self.spec.batch_size)
            if limit is not None:
                end = min(end, self._position + limit - examined)
            before = self._position
            done, stopped = self._examine_batch(before, end, stop)
            examined += done
            if stopped:
                self._commit_due(force=True)
                return examined
            if not done and self._position == before:
                break  # the log holds fewer records than it did: the next pass sees why
            self._commit_due(force=False)
        self._commit_due(force=self._position >= head)
        return examined

    def _examine_batch(
        self, start: int, end: int, stop: threading.Event | None
    ) -> tuple[int, bool]:
        """Examine the records in ``[start, end)``: return how many, and whether ``stop``
        ended the batch early.

        The per-record path of every consumer, kept flat: a record that does not match
        costs a dict lookup; a handled one a decode, the handler's call and two counts.
        Failures (retries, parking) and handlers that append leave it for
        :meth:`_deliver` and :meth:`_handled`."""
        accepts = self._filter.accepts
        decode = self.store.decode
        call = self._call
        every = self.spec.commit_every
        stats = self.stats
        parked_ahead = self._parked_ahead
        examined = 0
        rows = self._continuity.read(self.store.backend, start, end)
        if rows is None:  # records it passed were lost, others took their offsets (ADR 0047)
            self._pending = Pending()  # so that nothing past them is committed
            self._committed(self._stored.parted(start, start - 1, self._call.handler))
            self._position = self.stats.position
            return 0, False
        last = None
        for stored in rows:
            if self._closed or (stop is not None and stop.is_set()):
                self._continuity.examined(None)
                return examined, True
            examined += 1
            last = stored
            if not accepts(stored.event_type, stored.streams):
                self._position = stored.offset + 1
                continue
            record = decode(stored)
            try:
                appends = call(record)
                if appends:  # committed now, with the position past the record
                    self._handled(record, appends, replaying=False)
                else:
                    self._pending.handled += 1
                    stats.handled += 1
                    if parked_ahead and record.offset in parked_ahead:
                        self._pending.unparked.append(record.offset)
            except _CommitFailed as failed:
                raise failed.error from None  # unhandled yet: run() retries or waits
            except Exception as exc:  # the handler's (or its appends') failure
                if not self._redeliver(record, exc, stop):
                    self._continuity.examined(None)
                    return examined - 1, True
            self._position = record.offset + 1
            if self._pending.handled >= every:
                self._commit_due(force=True)
        self._continuity.examined(last)
        return examined, False

    def drain(self) -> int:
        """Handle everything up to the end of the log (what the handler appends included)
        and commit; return how many records were examined."""
        examined = 0
        while more := self.run_once():
            examined += more
        self.flush()
        return examined

    def _check_lease(self) -> None:
        if self._lease.lost.is_set():
            raise LeaseHeld(
                f"consumer {self.name!r}: this runner lost its lease",
                consumer=self.name,
                holder=None,
                expires_at=None,
            )

    # -- one record ----------------------------------------------------------------------

    def _redeliver(
        self, record: RecordedEvent, failure: Exception, stop: threading.Event | None
    ) -> bool:
        """After the first try of ``record`` failed: the further tries, then parking;
        False when ``stop`` was set while waiting out a backoff (the record stays
        unhandled, its position not passed)."""
        # What was handled before it is committed first: the lag then counts from the
        # record that waits out its backoff, which its standing error names (ADR 0058).
        self._commit_due(force=True)
        try:
            attempts, error = self._deliver(record, stop, replaying=False, failed=failure)
        except _Stopped:
            return False
        if error is not None:
            self._position = record.offset + 1
            self._pending.parked.append(self._parked(record, attempts, error))
            self._commit_due(force=True)
        return True

    def _deliver(
        self,
        record: RecordedEvent,
        stop: threading.Event | None,
        *,
        replaying: bool,
        failed: Exception | None = None,
    ) -> tuple[int, str | None]:
        """Hand ``record`` to the handler until it succeeds or ``max_deliver`` tries fail;
        return the tries and the last error (``None``: handled, and counted as pending or
        committed with the handler's appends). ``failed``: the first try was made, and
        raised that."""
        error = None
        first = 1
        try:
            if failed is not None:
                error = self._failed(record, failed, 1)
                first = 2
            for attempt in range(first, self.spec.max_deliver + 1):
                if attempt > 1:
                    delay = self.spec.delay_before(attempt)
                    if stop is not None and stop.wait(delay):
                        raise _Stopped
                    if stop is None:
                        time.sleep(delay)
                try:
                    appends = self._call(record, replaying)
                    self._handled(record, appends, replaying=replaying)
                    return attempt, None
                except _CommitFailed as failed:
                    raise failed.error from None
                except Exception as exc:  # the handler's failure, whatever it is
                    error = self._failed(record, exc, attempt)
            return self.spec.max_deliver, error
        finally:
            # Over before the caller commits a park: the heartbeat, seeing it gone, cannot
            # then write it over the parked record's error (ADR 0058).
            self.stats.retry = None

    def _failed(self, record: RecordedEvent, exc: Exception, attempt: int) -> str:
        """Count and log a failed try; return its description, which names the record's
        offset (ADR 0058)."""
        error = describe_failure(exc)
        described = record_error(record.offset, error)
        stats = self.stats
        stats.failures += 1
        stats.last_error = described
        if attempt < self.spec.max_deliver:
            stats.retry = retry_error(record.offset, attempt, self.spec.max_deliver, error)
        logger.warning(
            "consumer %s: offset %d (%s) failed (try %d of %d): %s",
            self.name,
            record.offset,
            record.event_type,
            attempt,
            self.spec.max_deliver,
            error,
        )
        return described

    def _handled(self, record: RecordedEvent, appends: list[Any], *, replaying: bool) -> None:
        """Count ``record`` as handled; with ``appends``, commit them now, in one
        transaction with everything pending and the position past the record."""
        pending = self._pending
        pending.handled += 1
        unparks = replaying or record.offset in self._parked_ahead
        if unparks:
            pending.unparked.append(record.offset)
        if appends:
            position = max(self._position, record.offset + 1)
            try:
                self._stored.expect(position, self.stats.position)
                self.store.append_batch(appends, consumer_move=self._move(position))
            except BaseException as exc:
                # Not committed, as far as this runner knows: the record is not handled yet.
                pending.handled -= 1
                if unparks:
                    pending.unparked.pop()
                if not isinstance(exc, StorageError | LeaseHeld):
                    self._stored.clear()  # refused before the commit: nothing landed
                    raise
                if not (isinstance(exc, StorageError) and self._settled_if_known()):
                    raise _CommitFailed(exc) from exc
            self._committed(position)
        self.stats.handled += 1

    def _parked(self, record: RecordedEvent, attempts: int, error: str) -> ParkedRecord:
        self._pending.error = error
        self.stats.parked += 1
        return parked_record(self.name, record, attempts, error)

    def _replay_parked(self, stop: threading.Event | None) -> None:
        """Hand the parked records whose replay was requested to the handler again: on
        success they leave the parked list, otherwise they stay with the new error."""
        wanted = self._replays_wanted()
        if wanted and self._pending:  # first: each replay's move then holds its result alone
            self._commit_due(force=True)  # (ADR 0059); what it commits may park one again
            wanted = self._replays_wanted()
        for parked in wanted:
            record = next(self.store.read_range(parked.offset, parked.offset + 1), None)
            if record is None:  # pragma: no cover - a parked offset is always in the log
                continue
            try:
                attempts, error = self._deliver(record, stop, replaying=True)
            except _Stopped:
                return
            if error is not None:
                self._pending.error = error
                self._pending.parked.append(
                    attrs.evolve(
                        parked, attempts=parked.attempts + attempts, error=error, replay=False
                    )
                )
            try:
                self._commit_due(force=True)
            except StorageError:  # not settled by the position but by the row (ADR 0059)
                if self._stored.position is None:
                    self._pending = Pending()
                raise

    def _replays_wanted(self) -> list[ParkedRecord]:
        """Below the position: one at or past it is handed over in order (reset back)."""
        rows = self._consumers.parked_records(self.name)
        return [p for p in rows if p.replay and p.offset < self._position]

    # -- commits ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Commit the position now."""
        self._commit_due(force=True)

    def _commit_due(self, *, force: bool) -> None:
        if self._closed:  # close() committed what was handled before the record in hand
            return
        self._settle()
        pending = self._pending
        position = self._committable()
        if not pending and position == self.stats.position:
            return
        due = (
            force
            or pending.handled >= self.spec.commit_every
            or time.monotonic() - pending.since >= self.spec.commit_interval
        )
        if due:
            self._check_lease()  # not over what another did while the lease had run out
            move = self._move(position)
            self._stored.expect(position, self.stats.position, move)
            self._consumers.move_consumer(move)
            self._committed(position)

    def _committable(self) -> int:
        """How far the position may move: to the next record to examine, but not past a
        record whose effect is not durable yet (:class:`SettlesLater`)."""
        handler = self._settles
        if handler is not None:
            settled = handler.settled()
            if settled is not None:
                return max(self.stats.position, min(self._position, settled))
        return self._position

    def _move(self, position: int) -> PositionMove:
        return self._pending.move(self.name, self.holder, position, self.spec.lease_ttl)

    def _committed(self, position: int) -> None:
        self.stats.position = position
        self._pending = Pending()
        self._stored.clear()

    def _settle(self) -> bool:
        """Take a move whose commit failed as committed if it landed all the same; return
        whether it had (:class:`StorageError` while the storage cannot tell)."""
        landed = self._stored.landed()
        if landed is None:
            return False
        logger.warning(
            "consumer %s: a commit reported as failed had landed (position %d): going on",
            self.name,
            landed,
        )
        self._position = max(self._position, landed)
        self._committed(landed)
        return True

    def _settled_if_known(self) -> bool:
        try:
            return self._settle()
        except StorageError:
            return False  # asked again before the runner goes on
