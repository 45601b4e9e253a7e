"""Write transactions in order: the store's append lock, the backend transaction, what other
processes committed folded first, and the result made current and handed to delivery only
once the backend has committed (ADR 0025). Concurrent appends to a backend whose commits
are costly share one transaction and one commit: group commit (ADR 0029)."""

from __future__ import annotations

import threading
import time

from chanlog.appending import AppendPipeline, AppendRequest, CommitResult, Encoded, Work
from chanlog.backends.base import Backend
from chanlog.delivery import Delivery
from chanlog.folding import InlineProjections, WriteStage
from chanlog.reading import EventDecoder
from chanlog.signals import event_appended

__all__ = ["Writer"]


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
        self._waiting: list[AppendRequest] = []
        # Who leads the next group: one caller at a time; the others wait on the condition.
        # The plain lock is entered directly (a Condition's own __enter__ is Python code).
        self._taken = threading.Lock()
        self._turn = threading.Condition(self._taken)
        self._leading = False
        self._company = False

    def catch_up(self, end: int, *, notify: bool) -> None:
        """Fold records ``[folded, end)`` written by someone else (another process, or an
        earlier run); queue them for delivery when ``notify`` (call under the lock)."""
        delivery = self._delivery
        deliver = notify and delivery.wanted
        self._inline.catch_up(
            self._backend, self._decoder, end, delivery.enqueue if deliver else None
        )

    def run(
        self,
        work: Work,
        encoded: list[Encoded],
        expected: dict[str, int] | None,
        batch: bool,
    ) -> CommitResult:
        """Run ``work(transaction, encoded, expected, batch)`` in one write transaction,
        after folding whatever others committed; once the backend has committed, make its
        result current and deliver it. (Fixed arguments, not ``*arguments``: a call that
        unpacks costs more than the rest of this method on every append.)"""
        with self._lock:
            # What Delivery.wanted says, without a call on every append. Nobody subscribes
            # while this lock is held (subscribe() connects under it), so a subscriber gets
            # these records from the log or from the outbox, never neither.
            self._pipeline.recording = bool(event_appended.receivers or self._delivery.publishes)
            with self._backend.write() as transaction:
                if transaction.head.length != self._inline.folded:
                    self.catch_up(transaction.head.length, notify=True)
                result = work(transaction, encoded, expected, batch)
            if result.stage is not None:
                result.stage.commit()
                if result.records:
                    self._inline.folded = result.records[-1].offset + 1
                    if result.recorded:
                        self._delivery.outbox.extend(result.recorded)
        if self._delivery.outbox:
            self._delivery.deliver()
        return result

    def append(
        self, encoded: list[Encoded], expected: dict[str, int] | None, batch: bool
    ) -> CommitResult:
        """Write one caller's append with whatever other threads are appending meanwhile,
        in one transaction, and return once it is committed (group commit).

        One caller at a time leads: it takes every append queued by then and writes them
        in one transaction while the others queue the next group and wait for a signal,
        not for the store's lock. A caller alone leads at once, with no wait. A refused
        append fails alone; a failing backend fails every append of the transaction.
        """
        taken = self._taken
        with taken:
            if not self._leading and not self._waiting:
                # Nobody else is appending: write at once, as run() would.
                self._leading = True
                self._company = False
                request = None
            else:
                request = AppendRequest(encoded, expected, batch)
                self._waiting.append(request)
                while self._leading and not request.done:
                    self._turn.wait()
                if not request.done:
                    self._leading = True
        if request is None:
            try:
                return self.run(self._pipeline.write, encoded, expected, batch)
            finally:
                self._hand_over(everyone=False)
        if not request.done:
            try:
                self._lead(request)
            finally:
                self._hand_over(everyone=True)
        if self._delivery.outbox:
            self._delivery.deliver()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead(self, request: AppendRequest) -> None:
        """Write every queued append, ``request`` among them."""
        if self._company:
            # The last group had company: others are appending. Yield so that they queue
            # theirs first (a caller appending alone never comes here).
            time.sleep(0)
        with self._taken:
            group = list(self._waiting)
            self._waiting.clear()
        self._company = len(group) > 1
        with self._lock:
            if len(group) == 1:
                self._run_alone(request)
            else:
                self._run_group(group)

    def _hand_over(self, *, everyone: bool) -> None:
        """Stop leading; wake the callers of the group just written (``everyone``) and
        those waiting to lead the next one."""
        with self._taken:
            self._leading = False
            if everyone or self._waiting:
                self._turn.notify_all()

    def _run_alone(self, request: AppendRequest) -> None:
        try:
            request.result = self.run(
                self._pipeline.write, request.encoded, request.expected, request.batch
            )
        except BaseException as exc:
            request.error = exc
        request.done = True

    def _run_group(self, group: list[AppendRequest]) -> None:
        pipeline = self._pipeline
        try:
            pipeline.recording = bool(event_appended.receivers or self._delivery.publishes)
            with self._backend.write() as transaction:
                if transaction.head.length != self._inline.folded:
                    self.catch_up(transaction.head.length, notify=True)
                stage = pipeline.write_group(transaction, group)
        except BaseException as exc:
            for request in group:
                if request.error is None:
                    request.result = None
                    request.error = exc
                request.done = True
            return
        self._make_current(stage, group)

    def _make_current(self, stage: WriteStage, group: list[AppendRequest]) -> None:
        stage.commit()
        outbox = self._delivery.outbox
        for request in group:
            result = request.result
            if result is not None and result.records:
                self._inline.folded = result.records[-1].offset + 1
                if result.recorded:
                    outbox.extend(result.recorded)
            request.done = True
