"""The boundary between a store and its telemetry (ADR 0073): whatever a telemetry
implementation raises at one of its points is caught there, said once (and again each minute
it goes on, and once when it stops) naming the provider and its plugin, and changes nothing
the store, a consumer, a relay or an ingest does.

A telemetry observes; it never decides. An append that committed is the caller's committed
append whatever the span processor after it raised; a refusal keeps its own rule; a consumer's
try is handled or failed by its handler alone (a telemetry's context manager can neither fail
a try that succeeded nor swallow a handler's failure). Only :class:`Exception` is caught: an
interruption (``KeyboardInterrupt``) is the process's, not the telemetry's.

Only an instrumented store pays for this (its parts are wrapped anyway, ADR 0035): an
uninstrumented one runs none of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from chanlog.failure_log import FailureLog
from chanlog.records import RecordedEvent, StoredSnapshot

if TYPE_CHECKING:
    from chanlog.appending import CommitResult, Encoded

# chanlog.telemetry's protocols are not imported: that module imports this one. What is
# guarded is typed Any here; the guards themselves implement the protocols.
Span = tuple[int, int]

__all__ = ["GuardedTelemetry", "GuardedTracing", "TelemetryFaults", "guarded"]

logger = logging.getLogger("chanlog.telemetry")

_CONSEQUENCE = "what the store, its consumers and relays do goes on, unreported there"


class TelemetryFaults:
    """The failures of one telemetry, by point (the protocol method that raised).

    Args:
        who: how the lines name the telemetry (its provider and plugin).
    """

    def __init__(self, who: str) -> None:
        self._who = who
        self._logs: dict[str, FailureLog] = {}
        self._lock = threading.Lock()
        self.failing = False
        """Whether some point failed last time (read unlocked: a stale read only delays
        the line that says it works again to the next report)."""

    def failed(self, point: str, error: Exception) -> None:
        """``point`` raised ``error``: say so, once (with its traceback), then each minute."""
        with self._lock:
            log = self._logs.get(point)
            if log is None:
                log = self._logs[point] = FailureLog(
                    logger, f"{self._who} at {point}", _CONSEQUENCE, then=""
                )
            log.failed(error, logging.ERROR, with_traceback=True)
            self.failing = True

    def succeeded(self, point: str) -> None:
        """``point`` reported without raising: after failures, say it works again."""
        with self._lock:
            log = self._logs.get(point)
            if log is not None:
                log.succeeded()
            self.failing = any(log.failing for log in self._logs.values())

    def report(self, point: str, call: Callable[..., Any], *arguments: Any) -> Any:
        """``call(*arguments)``, or ``None`` when it raised (said by :meth:`failed`)."""
        try:
            result = call(*arguments)
        except Exception as exc:
            self.failed(point, exc)
            return None
        if self.failing:
            self.succeeded(point)
        return result


class _Guarded:
    """A context manager of a telemetry (``make(*arguments)``), entered and left so that
    what it raises is reported and what it returns from ``__exit__`` is ignored: the work
    inside succeeds or fails on its own."""

    __slots__ = ("_arguments", "_faults", "_inner", "_make", "_point")

    def __init__(
        self,
        faults: TelemetryFaults,
        point: str,
        make: Callable[..., AbstractContextManager[object]] | None,
        *arguments: Any,
    ) -> None:
        self._faults = faults
        self._point = point
        self._make = make
        self._arguments = arguments
        self._inner: AbstractContextManager[object] | None = None

    def __enter__(self) -> object:
        if self._make is None:
            return None
        try:
            inner = self._make(*self._arguments)
            entered = inner.__enter__()
        except Exception as exc:
            self._faults.failed(self._point, exc)
            return None
        self._inner = inner
        return entered

    def __exit__(self, kind: type[BaseException] | None, error: Any, traceback: Any) -> None:
        inner = self._inner
        if inner is None:
            return
        self._inner = None
        try:
            inner.__exit__(kind, error, traceback)  # True would swallow the work's error
        except Exception as exc:
            if exc is not error:  # one that re-raises the work's error is not at fault
                self._faults.failed(self._point, exc)
            return
        if self._faults.failing:
            self._faults.succeeded(self._point)


class _GuardedConsumer:
    """A :class:`~chanlog.telemetry.ConsumerTelemetry` behind the boundary (``inner``
    ``None``: asking for it failed, nothing is reported)."""

    __slots__ = ("_faults", "_inner")

    def __init__(self, inner: Any, faults: TelemetryFaults) -> None:
        self._inner = inner
        self._faults = faults

    def processing(self, record: RecordedEvent) -> AbstractContextManager[object]:
        """Around one try of the handler on ``record``."""
        make = None if self._inner is None else self._inner.processing
        return _Guarded(self._faults, "processing", make, record)


class _GuardedRelay:
    """A :class:`~chanlog.telemetry.RelayTelemetry` behind the boundary: headers that are
    not a mapping of text to text are not carried."""

    __slots__ = ("_faults", "_inner")

    def __init__(self, inner: Any, faults: TelemetryFaults) -> None:
        self._inner = inner
        self._faults = faults

    def published(self, record: RecordedEvent, subject: str) -> Mapping[str, str] | None:
        """The headers the telemetry gives ``record``'s message, or ``None``."""
        if self._inner is None:
            return None
        headers = self._faults.report("published", self._inner.published, record, subject)
        if headers is None:
            return None
        if not isinstance(headers, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
        ):
            error = TypeError(f"published() returned {headers!r}, not a mapping of str to str")
            self._faults.failed("published", error)
            return None
        return headers


class GuardedTelemetry:
    """A :class:`~chanlog.telemetry.StoreTelemetry` behind the boundary: each point is
    reported through :meth:`TelemetryFaults.report`.

    Args:
        telemetry: what the provider offered.
        faults: where its failures are said.
    """

    __slots__ = ("faults", "telemetry")

    def __init__(self, telemetry: Any, faults: TelemetryFaults) -> None:
        self.telemetry = telemetry
        """What the provider offered."""
        self.faults = faults

    def appended(
        self, encoded: Sequence[Encoded], result: CommitResult, span: Span, commit: Span | None
    ) -> None:
        """Report a committed append."""
        self.faults.report("appended", self.telemetry.appended, encoded, result, span, commit)

    def refused(self, rule: str, error: Exception, span: Span) -> None:
        """Report a refused append."""
        self.faults.report("refused", self.telemetry.refused, rule, error, span)

    def committed(self, span: Span, durable: bool) -> None:
        """Report a commit."""
        self.faults.report("committed", self.telemetry.committed, span, durable)

    def reconstructed(self, kind: str, span: Span) -> None:
        """Report a reconstruction."""
        self.faults.report("reconstructed", self.telemetry.reconstructed, kind, span)

    def verified(self, records: int, error: Exception | None, span: Span) -> None:
        """Report a verify."""
        self.faults.report("verified", self.telemetry.verified, records, error, span)

    def snapshot_taken(self, snapshot: StoredSnapshot, span: Span) -> None:
        """Report a snapshot."""
        self.faults.report("snapshot_taken", self.telemetry.snapshot_taken, snapshot, span)

    def consumer(self, name: str) -> _GuardedConsumer:
        """The telemetry of consumer ``name``, behind the boundary."""
        inner = self.faults.report("consumer", self.telemetry.consumer, name)
        return _GuardedConsumer(inner, self.faults)

    def relay(
        self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]
    ) -> _GuardedRelay:
        """The telemetry of a relay, behind the boundary."""
        inner = self.faults.report("relay", self.telemetry.relay, consumer, system, stats)
        return _GuardedRelay(inner, self.faults)


class GuardedTracing(GuardedTelemetry):
    """A :class:`GuardedTelemetry` of a telemetry that continues traces
    (:class:`~chanlog.telemetry.ContinuesTraces`)."""

    __slots__ = ()

    def received(
        self, system: str, source: str, carriers: Sequence[Mapping[str, str] | None]
    ) -> AbstractContextManager[object]:
        """Around the append of received messages, behind the boundary."""
        make = self.telemetry.received
        return _Guarded(self.faults, "received", make, system, source, carriers)


def guarded(telemetry: Any, who: str) -> GuardedTelemetry:
    """``telemetry`` behind the boundary, its failures said naming it ``who``."""
    # What isinstance(telemetry, ContinuesTraces) checks, without importing the protocols'
    # module, which imports this one.
    tracing = callable(getattr(telemetry, "received", None))
    kind = GuardedTracing if tracing else GuardedTelemetry
    return kind(telemetry, TelemetryFaults(who))
