"""Delivery: the ordered hand-off of committed records to whoever observes the log.

Committed records are queued here (never before the backend committed) and handed out in
offset order through the blinker ``event-appended`` signal, which subscriptions and any
other receiver connect to. This is where a message bus plugs in (DESIGN section 10).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from chanlog.backends.base import Backend
from chanlog.bus.brokers import Broker
from chanlog.bus.subjects import SubjectFilter
from chanlog.errors import ChanlogError, StorageError
from chanlog.failure_log import FailureLog
from chanlog.records import RecordedEvent
from chanlog.signals import event_appended
from chanlog.subscriptions import RangeReader, Subscription

__all__ = ["Delivery"]

logger = logging.getLogger("chanlog.delivery")


class Delivery:
    """The outbox of one store and the subscriptions it feeds.

    Args:
        sender: what receivers are told sent each record (the store).
        reader: where subscriptions read records they missed.
        append_lock: the store's append lock; held while a subscription connects, so no
            record can commit between the subscription's catch-up and its going live.
        length: how many records the store has folded (read under ``append_lock``).
        broker: what live subscriptions go through; its ``publish`` gets every committed
            record after the ``event-appended`` signal (unless it says it does not publish).
    """

    def __init__(
        self,
        sender: object,
        reader: RangeReader,
        append_lock: threading.RLock,
        length: Callable[[], int],
        broker: Broker,
    ) -> None:
        self._sender = sender
        self._broker = broker
        self.publishes = broker.publishes
        """Whether the broker publishes records beyond the signal (an attribute: the store
        reads it after every append)."""
        self._reader = reader
        self._append_lock = append_lock
        self._length = length
        self._foreign: set[int] = set()  # queued offsets this store did not commit
        self.outbox: deque[RecordedEvent] = deque()
        """Committed records waiting to be delivered (an attribute, not a property: the
        store looks at it after every append)."""
        # Re-entrant so that a callback may subscribe (ADR 0065); ``_in_delivery`` says the
        # thread holding it is handing out records, so a callback's append returns at once
        # (the loop running delivers its record) instead of delivering inside a callback.
        self._delivering = threading.RLock()
        self._in_delivery = False
        self._receivers: list[Callable[..., Any]] = []  # those of the drain running
        self._subscriptions: list[Subscription] = []
        self._stops: dict[Subscription, Callable[[], None]] = {}
        self._watcher: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def wanted(self) -> bool:
        """Whether anyone listens (otherwise committed records are not even queued)."""
        return bool(event_appended.receivers) or self.publishes

    def enqueue(self, records: Iterable[RecordedEvent]) -> None:
        """Queue records another process (or an earlier run) committed, in offset order
        (call under the append lock). They go to the ``event-appended`` signal like this
        store's own, but not to the broker's ``publish``: the process that committed them
        publishes them, and every process sharing the log must not publish them again."""
        if not self.publishes:
            self.outbox.extend(records)
            return
        for record in records:
            self._foreign.add(record.offset)
            self.outbox.append(record)

    def rewound(self, length: int) -> None:
        """The log lost its records from offset ``length`` on (call under the append lock):
        those still queued are dropped, and subscriptions that were handed them will be
        handed the records that take their offsets (ADR 0043)."""
        if any(record.offset >= length for record in self.outbox):
            kept = [record for record in self.outbox if record.offset < length]
            self.outbox.clear()
            self.outbox.extend(kept)
            # Dropped unpublished: this store's own records at those offsets are published.
            self._foreign.difference_update([o for o in self._foreign if o >= length])
        for subscription in list(self._subscriptions):
            if subscription.next_offset > length:
                subscription.next_offset = length

    def deliver(self) -> None:
        """Drain the outbox in offset order. Whichever thread holds the delivery lock
        delivers everything queued, so records reach receivers in offset order even when
        many threads append; a callback that appends does not deadlock (its record is
        delivered by the loop already running)."""
        outbox = self.outbox
        while outbox:
            if not self._delivering.acquire(blocking=False):
                return
            if self._in_delivery:  # a callback's append: the loop running delivers it
                self._delivering.release()
                return
            self._in_delivery = True
            try:
                # Resolved once per drain, not per record: only a callback of this drain can
                # subscribe meanwhile (subscribe() adds it here), and a subscription closed
                # meanwhile skips itself.
                receivers = self._receivers = list(event_appended.receivers_for(self._sender))
                if not self.publishes:
                    while outbox:
                        self._notify(outbox.popleft(), receivers)
                else:
                    drained: list[RecordedEvent] = []
                    foreign = self._foreign
                    while outbox:
                        record = outbox.popleft()
                        self._notify(record, receivers)
                        if record.offset in foreign:
                            foreign.discard(record.offset)
                        else:
                            drained.append(record)
                    if drained:
                        self._publish(drained)
            finally:
                self._in_delivery = False
                self._delivering.release()

    def _publish(self, records: list[RecordedEvent]) -> None:
        try:
            self._broker.publish(records)
        except Exception:
            # Committed is committed: a broker that fails loses live delivery, not records
            # (durable consumers read the log).
            logger.exception(
                "broker %s failed to publish offsets %d..%d",
                self._broker.name,
                records[0].offset,
                records[-1].offset,
            )

    def _notify(self, record: RecordedEvent, receivers: list[Callable[..., Any]]) -> None:
        for receiver in receivers:
            try:
                receiver(self._sender, record=record)
            except Exception:
                logger.exception(
                    "event-appended receiver %r failed on offset %d", receiver, record.offset
                )

    def subscribe(
        self,
        callback: Callable[[RecordedEvent], Any],
        from_offset: int | None,
        name: str | None,
        subjects: SubjectFilter | None = None,
    ) -> Subscription:
        """A connected :class:`Subscription` (see :meth:`chanlog.EventStore.subscribe`).

        Callbacks run under the delivery lock only, never under the append lock: the
        catch-up's too, so a callback may append, subscribe, close and read (ADR 0065).

        Raises:
            ChanlogError: the store is closed.
        """
        if self.closed:
            raise ChanlogError("the store is closed")
        subscription = Subscription(
            self._reader,
            callback,
            from_offset or 0,
            name,
            on_close=self._disconnect,
            subjects=subjects,
            locked=self._broker.publishes,
        )
        if from_offset is not None:
            # Most of the catch-up runs without blocking live delivery to others...
            subscription.catch_up(self._length())
        # ...and the last stretch under the delivery lock, connected under the append lock
        # too, so that every record committed after ``known`` reaches it live (nobody can
        # deliver one before its catch-up ends).
        with self._delivering:
            nested, self._in_delivery = self._in_delivery, True
            try:
                known = self._connect(subscription, from_offset is None, nested)
                if from_offset is not None:
                    subscription.catch_up(known)
            except BaseException:
                subscription.close()
                raise
            finally:
                self._in_delivery = nested
        self.deliver()
        return subscription

    def _connect(self, subscription: Subscription, live: bool, nested: bool) -> int:
        """Connect ``subscription`` at the end of what the store folded, and return that
        length (``nested``: the delivery lock's thread is handing out records already)."""
        broker, stop = self._broker, None
        if broker.publishes:
            # A remote broker's subscribe is a round trip, as long as its timeout while the
            # broker is away: made before the append lock, so no append waits on the
            # network. A live subscription starts at the length read now; a record committed
            # while it subscribed comes from the broker or, missed, from the log when the
            # next one shows the gap (ADR 0065).
            if live:
                subscription.next_offset = self._length()
            stop = broker.subscribe(subscription)
        with self._append_lock:
            if self.closed:
                if stop is not None:
                    stop()
                raise ChanlogError("the store is closed")
            known = self._length()
            if stop is None:
                if live:
                    subscription.next_offset = known
                stop = broker.subscribe(subscription)
            self._stops[subscription] = stop
            self._subscriptions.append(subscription)
            if nested and any(
                receiver is subscription for receiver in event_appended.receivers_for(self._sender)
            ):
                # Subscribed by a callback of the drain running: it delivers the records
                # queued after ``known`` with the receivers it resolved, this one among them.
                self._receivers.append(subscription)
            return known

    def _disconnect(self, subscription: Subscription) -> None:
        stop = self._stops.pop(subscription, None)
        if stop is not None:
            stop()
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions."""
        return list(self._subscriptions)

    def watch(self, backend: Backend, refresh: Callable[[], Any]) -> None:
        """Start (once) a thread that calls ``refresh`` whenever another process appends
        to ``backend``."""
        with self._append_lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch, args=(backend, refresh), name="chanlog-watcher", daemon=True
            )
            self._watcher.start()

    def _watch(self, backend: Backend, refresh: Callable[[], Any]) -> None:
        failures = FailureLog(
            logger,
            "watching the shared log",
            "until it succeeds, this store folds and delivers nothing other processes append",
        )
        while not self._closing.is_set():
            try:
                if backend.wait(self._length(), 0.1):
                    refresh()
            except Exception as failure:
                if self._closing.is_set():
                    return
                # A database away is expected (no traceback); a record this process cannot
                # decode is the operator's to mend (its error names offset and plugin); any
                # other exception is a bug, and the watcher goes on all the same, or the
                # store's subscribers would silently get nothing more from other processes.
                if isinstance(failure, StorageError):
                    failures.failed(failure, logging.WARNING)
                else:
                    bug = not isinstance(failure, ChanlogError)
                    failures.failed(failure, logging.ERROR, with_traceback=bug)
                self._closing.wait(1.0)
            else:
                failures.succeeded()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` began (the store is closing)."""
        return self._closing.is_set()

    def close(self) -> None:
        """Close every subscription and stop the watcher."""
        self._closing.set()
        with self._append_lock:
            for subscription in list(self._subscriptions):
                subscription.close()
            watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)
