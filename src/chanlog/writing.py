"""Write transactions in order: the store's append lock, the backend transaction, what other
processes committed folded first, and the result made current and handed to delivery only
once the backend has committed (ADR 0025). Concurrent appends to a backend whose commits
are costly share one transaction and one commit: group commit (ADR 0029)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from chanlog.appending import AppendPipeline, AppendRequest, CommitResult, Encoded, Work
from chanlog.backends.base import Backend
from chanlog.delivery import Delivery
from chanlog.errors import ChanlogError, StorageError
from chanlog.folded_chain import chain_hash_at
from chanlog.folding import InlineProjections, WriteStage
from chanlog.projections.base import Projection
from chanlog.reading import EventDecoder
from chanlog.records import Head
from chanlog.signals import event_appended

__all__ = ["Restore", "Writer"]

logger = logging.getLogger("chanlog.store")

Restore = Callable[[int], tuple[dict[str, Projection], int] | None]
"""Fresh projections from the newest usable snapshot at or before an offset, and its offset
(:meth:`chanlog.snapshots.manager.SnapshotManager.restore`)."""

_MAX_GATHER = 0.002
"""The longest a leader waits for company (seconds), however long the last write took."""


def _interrupted_write(interruption: BaseException) -> StorageError:
    """What the callers of a group get when its leader was interrupted while it wrote."""
    error = StorageError(
        f"the thread writing this append's group was interrupted "
        f"({type(interruption).__name__}) while it wrote it: the append may have been "
        "written; append it again (an append already in the log returns its offset)"
    )
    error.__cause__ = interruption
    return error


class Writer:
    """Runs write work for one store.

    Args:
        backend: where records go.
        inline: the store's projections (folded first, made current last).
        pipeline: encodes, stages and writes appends.
        delivery: where committed records go.
        decoder: decodes what other processes committed.
        lock: the store's append lock, held around every transaction.
        groups: group concurrent appends into one transaction (worth it when a commit
            costs much more than staging an event: an fsync, a round trip).
    """

    def __init__(
        self,
        backend: Backend,
        inline: InlineProjections,
        pipeline: AppendPipeline,
        delivery: Delivery,
        decoder: EventDecoder,
        lock: threading.RLock,
        *,
        groups: bool,
    ) -> None:
        self._backend = backend
        self._inline = inline
        self._pipeline = pipeline
        self._delivery = delivery
        self._decoder = decoder
        self._lock = lock
        self.groups = groups
        self.restore: Restore | None = None
        """Where folding the log afresh starts from (set by the store: its snapshots)."""
        self.on_rewind: Callable[[], None] | None = None
        """Called once the log was folded again after it lost records (set by the store)."""
        self.closed = False
        """Set by the store as it closes, under the lock: a write that was under way then
        is refused instead of landing after ``close()`` returned."""
        self._waiting: list[AppendRequest] = []
        # Guards the queue and who leads; each waiting caller blocks on a lock of its own
        # (AppendRequest.wake), so a hand-over wakes exactly the threads it concerns.
        self._taken = threading.Lock()
        self._leading = False
        # A leader gathers company before it writes: as many appends as the last group
        # held, waiting at most as long as the last group took to write (ADR 0029).
        self._gathered = threading.Condition(self._taken)
        self._gathering = 0
        self._last_group = 1
        self._last_write = 0.0

    def refold(self, head: Head) -> None:
        """Fold the log up to ``head`` into projections that hold nothing yet: from the
        newest usable snapshot, then the records after it (call under the lock)."""
        inline = self._inline
        restored = self.restore(head.length) if inline and self.restore is not None else None
        if restored is not None:
            inline.replace(*restored)
            inline.last_snapshot_offset = restored[1]
        inline.chain.restart(None)  # the log as it is: there is nothing folded to compare
        self.catch_up(head, notify=False)

    def align(self, head: Head) -> None:
        """Bring the projections to the log that ends at ``head`` (call under the lock):
        fold and queue for delivery what others appended, or, when the log no longer holds
        the records this store folded, fold it again from the log (ADR 0043, ADR 0047)."""
        if self.catch_up(head, notify=True):
            return
        inline = self._inline
        folded, length = inline.folded, head.length
        shared = inline.chain.shared(partial(chain_hash_at, self._backend))
        if shared == folded:  # the record folded last is there: the next does not link to it
            logger.error(
                "offset %d: the log's record does not link to the one before it (its chain "
                "hash is not keccak256(previous chain hash || event id)); the log was changed "
                "outside chanlog: folding on, run `chanlog verify`",
                folded,
            )
            inline.chain.hash = None
            self.catch_up(head, notify=True)
            return
        if length < folded:
            logger.error(
                "the log holds %d records but this store had folded %d: acknowledged "
                "records %d to %d are no longer in it (a database that lost commits: a "
                'crash with durability "normal", a failover to a replica behind it, a backup '
                "restored under a running node); folding the store's state again from the "
                "log; subscribers are handed the records from offset %d on again",
                length,
                folded,
                length,
                folded - 1,
                shared,
            )
        else:
            logger.error(
                "the log holds %d records, but not the ones this store had folded: its "
                "record at offset %d is another (its chain hash differs); the log lost "
                "records this store had folded and others took their offsets, from offset "
                "%d on at the latest (a database that lost commits, then appends by another "
                "process); folding the store's state again from the log; subscribers are "
                "handed the records from offset %d on again",
                length,
                folded - 1,
                shared,
                shared,
            )
        inline.reset()
        self.refold(head)
        self._delivery.rewound(shared)
        if self.on_rewind is not None:
            self.on_rewind()

    def see_others(self) -> None:
        """On a shared backend, fold and deliver what other processes appended since the
        store last looked (or fold again after a lost tail), so that "now" is the log the
        head says (ADR 0060): one head read, and the lock only when the log moved.

        Raises:
            StorageError: the head cannot be read (as ``len(store)`` raises then).
        """
        backend = self._backend
        if not backend.shared or self._delivery.closed:
            return
        head, inline = backend.head(), self._inline
        if head.length != inline.folded or head.chain_hash != inline.chain.hash:
            with self._lock:
                self.align(backend.head())
            self._delivery.deliver()

    def catch_up(self, head: Head, *, notify: bool) -> bool:
        """Fold records ``[folded, head.length)`` written by someone else (another process,
        or an earlier run); queue them for delivery when ``notify`` (call under the lock).
        False, folding nothing, when the log no longer holds what this store folded."""
        delivery = self._delivery
        deliver = notify and delivery.wanted
        return self._inline.catch_up(
            self._backend, self._decoder, head, delivery.enqueue if deliver else None
        )

    def _reconcile(self) -> None:
        """After a write failed in the storage once its transaction had opened (call under
        the lock): what it committed all the same, when the connection was lost as the
        database committed, is folded and queued for delivery now, as another process's
        records would be, so that the store's state and length agree with the log at once
        (ADR 0042). Left to the next write, which folds the same records or fails the same
        way, when this fails (the storage cannot even say where the log ends): the caller
        gets the write's error. Not called for a transaction that never opened: during an
        outage the head read would only make the caller wait as long again."""
        try:
            head = self._backend.head()
            if head.length != self._inline.folded or head.chain_hash != self._inline.chain.hash:
                self.align(head)
        except ChanlogError:
            pass

    def run(
        self,
        work: Work,
        encoded: list[Encoded],
        expected: dict[str, int] | None,
        batch: bool,
        deliver: bool = True,
    ) -> CommitResult:
        """Run ``work(transaction, encoded, expected, batch)`` in one write transaction,
        after folding whatever others committed; once the backend has committed, make its
        result current and, unless ``deliver`` is false, deliver it. (Fixed arguments, not
        ``*arguments``: a call that unpacks costs more than the rest of this method on every
        append.)

        A group's leader passes ``deliver=False`` and delivers once it has handed the lead
        over: a callback that appends would otherwise wait for the lead its own thread holds,
        and a slow one would hold up every appending thread (ADR 0065)."""
        try:
            with self._lock:
                if self.closed:
                    raise ChanlogError("the store is closed")
                # What Delivery.wanted says, without a call on every append. Nobody subscribes
                # while this lock is held (subscribe() connects under it), so a subscriber
                # gets these records from the log or from the outbox, never neither.
                self._pipeline.recording = bool(
                    event_appended.receivers or self._delivery.publishes
                )
                transaction = None
                try:
                    with self._backend.write() as transaction:
                        head, inline = transaction.head, self._inline
                        if head.length != inline.folded or head.chain_hash != inline.chain.hash:
                            self.align(head)
                        result = work(transaction, encoded, expected, batch)
                except StorageError:
                    if transaction is not None:  # a transaction never opened committed nothing
                        self._reconcile()
                    raise
                if result.stage is not None:
                    result.stage.commit()
                    if result.records:
                        self._inline.passed(result.records[-1])
                        if result.recorded:
                            self._delivery.outbox.extend(result.recorded)
        except StorageError:
            if deliver and self._delivery.outbox:  # what the failed write committed all the same
                self._delivery.deliver()
            raise
        if deliver and self._delivery.outbox:
            self._delivery.deliver()
        return result

    def append(
        self, encoded: list[Encoded], expected: dict[str, int] | None, batch: bool
    ) -> CommitResult:
        """Write one caller's append with whatever other threads are appending meanwhile,
        in one transaction, and return once it is committed (group commit).

        One caller at a time leads: it takes every append queued by then and writes them
        in one transaction, while the appends that arrive meanwhile queue for the next
        group; when it is done it wakes the callers of its group and hands the lead to the
        first queued caller, so the next group starts as the last one ends and each waiting
        thread is woken once. A caller alone leads at once, with no wait. A refused append
        fails alone; a failing backend fails every append of the transaction.
        """
        request: AppendRequest | None = None
        at_once = False
        try:
            with self._taken:
                if not self._leading and self._last_group == 1 and not self._waiting:
                    # Nobody else is appending: write at once, as run() would.
                    self._leading = at_once = True
                else:
                    request = AppendRequest(encoded, expected, batch)
                    self._waiting.append(request)
                    if self._leading:
                        wake = threading.Lock()
                        wake.acquire()
                        request.wake = wake
                        if 0 < self._gathering <= len(self._waiting):
                            self._gathered.notify()
                    else:
                        self._leading = request.leads = True
            if at_once:
                try:
                    return self.run(self._pipeline.write, encoded, expected, batch, False)
                finally:
                    at_once = False
                    self._hand_over(())
                    if self._delivery.outbox:  # once the lead is handed over (ADR 0065)
                        self._delivery.deliver()
            assert request is not None
            if request.wake is not None and not request.leads:
                request.wake.acquire()  # until written, or handed the lead
            if not request.done:
                self._lead(request)
        except BaseException:
            # Interrupted (Ctrl-C) wherever it came: whatever this caller held it gives up,
            # so that the others go on (ADR 0029).
            if at_once:
                self._hand_over(())
            elif request is not None:
                self._withdraw(request)
            raise
        if self._delivery.outbox:
            self._delivery.deliver()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _withdraw(self, request: AppendRequest) -> None:
        """Its caller was interrupted: withdraw ``request`` if no leader has taken it yet
        (it is not written), and pass the lead on if it was handed it and has not written
        its group (a group taken is failed and handed over by :meth:`_lead` itself)."""
        with self._taken:
            if request in self._waiting:
                self._waiting.remove(request)
            if request.leads and not request.done:
                request.leads = False
                self._pass_lead()

    def _lead(self, request: AppendRequest) -> None:
        """Write every queued append (``request`` among them), then hand over. When the last
        group had company, wait for as many appends first (the callers it released are
        preparing their next ones), at most as long as the last group took to write, so
        that one commit serves them all instead of a commit for the first and another for
        the rest."""
        group: list[AppendRequest] = []
        started = 0.0
        try:
            with self._taken:
                want = self._last_group
                if len(self._waiting) < want:
                    self._gathering = want
                    try:
                        self._gathered.wait(self._last_write)
                    finally:
                        self._gathering = 0
                # One step (no call between the two): interrupted, the group is either
                # still queued (append() withdraws this caller's) or taken (failed below).
                group, self._waiting = self._waiting, []
            self._last_group = len(group)
            started = time.perf_counter()
            with self._lock:
                if len(group) == 1:
                    self._run_alone(request)
                else:
                    self._run_group(group, request)
        finally:
            if group:
                if started:
                    self._last_write = min(time.perf_counter() - started, _MAX_GATHER)
                for member in group:
                    if member.result is None and member.error is None:
                        # The leader was interrupted before the group was written.
                        member.error = StorageError(
                            "the append was not written: the thread writing its group was "
                            "interrupted; append it again"
                        )
                    member.done = True
                self._hand_over(group)

    def _hand_over(self, group: list[AppendRequest] | tuple[()]) -> None:
        """Wake the callers of the group just written and hand the lead to the first caller
        queued meanwhile (or stop leading when none is)."""
        with self._taken:
            for member in group:
                if member.wake is not None and not member.leads:
                    member.wake.release()
            self._pass_lead()

    def _pass_lead(self) -> None:
        """Under the queue lock: the first queued caller leads next; with none, nobody
        leads until the next append."""
        if self._waiting:
            first = self._waiting[0]
            first.leads = True
            if first.wake is not None:
                first.wake.release()
        else:
            self._leading = False

    def _run_alone(self, request: AppendRequest) -> None:
        try:
            request.result = self.run(
                self._pipeline.write, request.encoded, request.expected, request.batch, False
            )
        except BaseException as exc:
            request.error = exc

    def _run_group(self, group: list[AppendRequest], leader: AppendRequest) -> None:
        pipeline = self._pipeline
        transaction = None
        try:
            if self.closed:
                raise ChanlogError("the store is closed")
            pipeline.recording = bool(event_appended.receivers or self._delivery.publishes)
            with self._backend.write() as transaction:
                head, inline = transaction.head, self._inline
                if head.length != inline.folded or head.chain_hash != inline.chain.hash:
                    self.align(head)
                stage = pipeline.write_group(transaction, group)
        except BaseException as exc:
            interrupted = not isinstance(exc, Exception)
            # What a commit that failed or was interrupted may have landed (ADR 0042); a
            # transaction that never opened committed nothing.
            if transaction is not None and (interrupted or isinstance(exc, StorageError)):
                self._reconcile()
            # The interruption is the leader's: the callers it wrote for get a StorageError
            # in their own threads, which nobody interrupted (ADR 0029).
            theirs = _interrupted_write(exc) if interrupted else exc
            for request in group:
                if request.error is None:
                    request.result = None
                    request.error = exc if request is leader else theirs
            return
        self._make_current(stage, group)

    def _make_current(self, stage: WriteStage, group: list[AppendRequest]) -> None:
        stage.commit()
        outbox = self._delivery.outbox
        for request in group:
            result = request.result
            if result is not None and result.records:
                self._inline.passed(result.records[-1])
                if result.recorded:
                    outbox.extend(result.recorded)
