"""Subscriptions: in-order delivery of records to a callback, with catch-up from the log."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import attrs

from chanlog.bus.subjects import SubjectFilter
from chanlog.errors import InvalidArgument
from chanlog.records import RecordedEvent

__all__ = ["DeliveryFailure", "Subscription"]

logger = logging.getLogger("chanlog.subscriptions")

MAX_KEPT_FAILURES = 100


class RangeReader(Protocol):
    """What a subscription reads missed records from (a store, or any log reader)."""

    def read_range(self, start: int, end: int) -> Iterator[RecordedEvent]:
        """Records with ``start <= offset < end``."""
        ...


@attrs.frozen
class DeliveryFailure:
    """A callback raised while handling the record at ``offset``."""

    offset: int
    error: BaseException


class Subscription:
    """Delivers every record from ``next_offset`` on (or those matching ``subjects``) to
    ``callback``, exactly once, in order.

    The store's broker connects it (the embedded broker to the ``event-appended`` signal,
    strongly: it stays connected until :meth:`close`). Live records that arrive ahead of
    ``next_offset`` (the subscription missed some while catching up, or a remote broker
    delivered them before this process saw them) are preceded by the missing ones read from
    the log, so there is never a gap; records already delivered are skipped, so there is
    never a duplicate.

    A callback that raises is isolated: the failure is logged, kept in :attr:`failures` (the
    last 100) and counted in :attr:`failure_count`, and delivery goes on with the next record.

    The callback may use the store: append (its record is delivered after the one in
    hand), subscribe, close this or another subscription, read, close the store (ADR 0065).

    Args:
        subjects: only records matching it reach the callback (``None``: all).
        locked: records may arrive from another thread than the store's delivery (a
            remote broker's): take a lock around each one.
    """

    def __init__(
        self,
        reader: RangeReader,
        callback: Callable[[RecordedEvent], Any],
        next_offset: int,
        name: str | None = None,
        on_close: Callable[[Subscription], Any] | None = None,
        *,
        subjects: SubjectFilter | None = None,
        locked: bool = False,
    ) -> None:
        if not callable(callback):
            raise InvalidArgument(f"callback must be callable, got {callback!r}")
        if name is not None and type(name) is not str:
            raise InvalidArgument(f"name must be a string, got {type(name).__name__}")
        self._reader = reader
        self._on_close = on_close
        self.callback = callback
        self.name = name or getattr(callback, "__qualname__", repr(callback))
        self.next_offset = next_offset
        self.subjects = subjects
        """The patterns records must match (``None``: every record)."""
        self.delivered = 0
        self.failure_count = 0
        self.failures: deque[DeliveryFailure] = deque(maxlen=MAX_KEPT_FAILURES)
        self._active = True
        self._lock = threading.Lock() if locked else None

    @property
    def active(self) -> bool:
        """False once closed."""
        return self._active

    @property
    def failed(self) -> bool:
        """True when the callback has raised at least once."""
        return self.failure_count > 0

    def __call__(self, sender: Any, *, record: RecordedEvent) -> None:
        """Receive a live record (blinker receiver protocol)."""
        # The store calls receivers under its delivery lock, one record at a time, so no
        # lock is needed here (a remote broker calls receive()).
        if not self._active or record.offset < self.next_offset:
            return
        if record.offset > self.next_offset:
            self._fill_gap(record.offset)
            if not self._active:  # closed by a callback of the gap's records
                return
        subjects = self.subjects
        if subjects is not None and not subjects.matches(record):
            self.next_offset = record.offset + 1
            return
        # _call() inlined for the live record: this runs for every record of every append.
        try:
            self.callback(record)
        except Exception as exc:
            self._failed(record, exc)
        self.delivered += 1
        self.next_offset = record.offset + 1

    def receive(self, record: RecordedEvent) -> None:
        """Receive a live record from a broker's own thread."""
        if self._lock is None:
            self(None, record=record)
            return
        with self._lock:
            self(None, record=record)

    def catch_up(self, end: int) -> None:
        """Deliver the records from :attr:`next_offset` up to ``end`` from the log."""
        if self._lock is None:
            self._fill_gap(end)
            return
        with self._lock:
            self._fill_gap(end)

    def _fill_gap(self, end: int) -> None:
        if self.next_offset < end:
            for record in self._reader.read_range(self.next_offset, end):
                if not self._active:
                    return
                self._call(record)

    def _call(self, record: RecordedEvent) -> None:
        subjects = self.subjects
        if subjects is None or subjects.matches(record):
            try:
                self.callback(record)
            except Exception as exc:
                self._failed(record, exc)
            self.delivered += 1
        self.next_offset = record.offset + 1

    def _failed(self, record: RecordedEvent, exc: Exception) -> None:
        self.failure_count += 1
        self.failures.append(DeliveryFailure(record.offset, exc))
        logger.exception(
            "subscriber %s failed on offset %d (%s)", self.name, record.offset, record.event_type
        )

    def close(self) -> None:
        """Stop delivery and disconnect from the store. Idempotent."""
        if self._active:
            self._active = False
            if self._on_close is not None:
                self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "active" if self._active else "closed"
        return f"<Subscription {self.name} next_offset={self.next_offset} {state}>"
