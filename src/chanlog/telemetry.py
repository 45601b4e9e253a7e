"""Instrumentation points: what a store, its consumers and a relay tell an installed
telemetry implementation (ADR 0035).

The core depends on no telemetry library. A plugin registers a :class:`TelemetryProvider`
(hook ``chanlog_register_telemetry``); when a store opens, each provider is asked, by name,
for a :class:`StoreTelemetry` for it, and the first one offered is installed. A provider
offers one only when telemetry is wanted (``chanlog-otel``: when an OpenTelemetry SDK is
configured), so a store normally gets none and its appends run exactly the code they ran
before: installing wraps the store's parts per instance (:func:`install`), and nothing is
checked on the way of an append when nothing is installed.

What the protocols receive is plain data (records, offsets, ``time.time_ns()`` stamps), so an
implementation can make spans after the fact, with the right start and end times, and
metrics, without the core knowing either.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chanlog.backends.capabilities import ManagesSnapshots
from chanlog.errors import (
    ChanlogError,
    ConcurrencyError,
    IntegrityError,
    InvalidEvent,
    InvalidTransition,
)
from chanlog.records import RecordedEvent, StoredSnapshot, Witness
from chanlog.telemetry_guard import TelemetryFaults, guarded

if TYPE_CHECKING:
    from chanlog.appending import AppendPipeline, CommitResult, Encoded, Work
    from chanlog.backends.base import Backend
    from chanlog.reconstruct import StateReconstructor
    from chanlog.snapshots.taking import SnapshotTaker
    from chanlog.verification import VerifyReport
    from chanlog.writing import Writer

__all__ = [
    "ConsumerTelemetry",
    "ContinuesTraces",
    "RelayTelemetry",
    "StoreTelemetry",
    "TelemetryProvider",
    "figures",
    "install",
    "refusal_rule",
    "telemetry_of",
]

Span = tuple[int, int]
"""A start and an end, in nanoseconds since the epoch (``time.time_ns()``)."""


@runtime_checkable
class ConsumerTelemetry(Protocol):
    """What one durable consumer's runner reports."""

    def processing(self, record: RecordedEvent) -> AbstractContextManager[object]:
        """Entered around one try of the handler on ``record``; an exception leaving it
        is a failed try (it propagates)."""


@runtime_checkable
class RelayTelemetry(Protocol):
    """What a relay (a handler publishing records to a broker) reports."""

    def published(self, record: RecordedEvent, subject: str) -> Mapping[str, str] | None:
        """``record`` is handed to the broker under ``subject``. Returns the headers its
        message is to carry besides the relay's own, so that the process that receives it
        can continue the trace (for example W3C ``traceparent``; ADR 0062), or ``None``."""


@runtime_checkable
class ContinuesTraces(Protocol):
    """A :class:`StoreTelemetry` that continues the traces of records received from a
    relay of another process (ADR 0062). Optional: an ingest asks for it."""

    def received(
        self, system: str, source: str, carriers: Sequence[Mapping[str, str] | None]
    ) -> AbstractContextManager[object]:
        """Entered around the append of messages an ingest received from ``system`` (e.g.
        ``"nats"``) out of ``source`` (its stream), one per appended message, with each
        message's headers (``carriers``: what the sending relay's
        :meth:`RelayTelemetry.published` returned, among others); an exception leaving it
        is a failed append (it propagates)."""


@runtime_checkable
class StoreTelemetry(Protocol):
    """What one store reports. Times are :data:`Span` pairs of ``time.time_ns()``."""

    def appended(
        self, encoded: Sequence[Encoded], result: CommitResult, span: Span, commit: Span | None
    ) -> None:
        """An append (one event or a batch) committed: ``result.records`` were written
        (``[]``: every event was already in the log); ``commit`` is its backend commit."""

    def refused(self, rule: str, error: Exception, span: Span) -> None:
        """An append was refused (nothing written): ``rule`` names why."""

    def committed(self, span: Span, durable: bool) -> None:
        """A write transaction committed (``durable``: the backend made it durable at
        that moment: an fsync or a database round trip)."""

    def reconstructed(self, kind: str, span: Span) -> None:
        """One entity's state was reconstructed."""

    def verified(self, records: int, error: Exception | None, span: Span) -> None:
        """A verify of the log ran: it checked ``records`` records and passed (``error``
        ``None``) or failed with ``error`` (an :class:`~chanlog.errors.IntegrityError`)."""

    def snapshot_taken(self, snapshot: StoredSnapshot, span: Span) -> None:
        """A snapshot was taken and stored."""

    def consumer(self, name: str) -> ConsumerTelemetry:
        """The telemetry of the durable consumer ``name`` (asked once per runner)."""

    def relay(
        self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]
    ) -> RelayTelemetry:
        """The telemetry of a relay run by ``consumer`` publishing to ``system`` (e.g.
        ``"nats"``); ``stats()`` returns its ``published`` and ``in_flight`` counts and
        ``settled`` (the oldest offset handed over and not acknowledged, or ``None``),
        read when metrics are collected."""


@runtime_checkable
class TelemetryProvider(Protocol):
    """What ``chanlog_register_telemetry`` registers."""

    def for_store(self, store: Any) -> StoreTelemetry | None:
        """The telemetry to install in ``store`` (an open :class:`chanlog.EventStore`
        whose projections are current), or ``None`` when none is wanted."""

    def serve_metrics(self, host: str, port: int) -> Callable[[], None]:
        """Serve metrics on ``host:port`` (``chanlog run --metrics``) and make stores
        opened from now on report to it; return what stops serving.

        Raises:
            ConfigError: the address cannot be served.
        """


# Store → its instruments, weakly both ways: the instruments live as long as the wrappers on
# the store's parts that use them, so a telemetry that refers to its store frees it all the
# same.
_installed: weakref.WeakKeyDictionary[Any, weakref.ref[_Instruments]] = weakref.WeakKeyDictionary()


# Provider (as named in log lines) → its failures to offer a store telemetry, said once for
# all the stores that open meanwhile.
_opening: dict[str, TelemetryFaults] = {}


def telemetry_of(store: Any) -> StoreTelemetry | None:
    """The telemetry installed in ``store`` (``None``: none, the common case), behind the
    boundary that keeps its failures from changing what its callers do (ADR 0073)."""
    try:
        found = _installed.get(store)
    except TypeError:  # an object that cannot be weakly referenced has none
        return None
    instruments = None if found is None else found()
    return None if instruments is None else instruments.telemetry


def figures(store: Any) -> dict[str, Any]:
    """What the log says now, read from the backend (so right whichever process wrote):
    ``records`` (the log's length), ``snapshots`` (``count`` and ``bytes`` stored, where
    the backend lists them, else ``None``) and ``consumers`` (name → ``position``,
    ``lag``, ``handled``, ``parked``). ``chanlog stats --json`` shows them as ``metrics``;
    ``chanlog-otel``'s gauges read them when metrics are collected."""
    backend = store.backend
    snapshots: dict[str, int] | None = None
    if isinstance(backend, ManagesSnapshots):
        sizes = backend.snapshot_sizes()
        snapshots = {"count": len(sizes), "bytes": sum(size for _offset, size in sizes)}
    consumers: dict[str, dict[str, int]] = {}
    try:
        infos = store.bus.consumers.infos()
    except ChanlogError:  # a backend that keeps no consumers
        infos = []
    for info in infos:
        consumers[info.name] = {
            "position": info.state.position,
            "lag": info.lag,
            "handled": info.state.handled,
            "parked": info.state.parked,
        }
    return {"records": backend.head().length, "snapshots": snapshots, "consumers": consumers}


def refusal_rule(error: Exception) -> str | None:
    """The rule an append refusal broke (``None``: ``error`` is not a refusal but a
    failure, e.g. of the backend)."""
    if isinstance(error, InvalidTransition):
        return error.rule
    if isinstance(error, InvalidEvent):
        return error.rule or "invalid event"
    if isinstance(error, ConcurrencyError):
        return "expected version"
    return None


def install(
    store: Any,
    writer: Writer,
    pipeline: AppendPipeline,
    taker: SnapshotTaker,
    reconstructor: StateReconstructor,
) -> None:
    """Install on ``store`` the telemetry the first provider (by name) offers, if any: its
    parts are wrapped per instance, so a store with none runs its plain code. A provider
    that raises offers none (said once per provider, ADR 0073); what is installed reports
    through :func:`chanlog.telemetry_guard.guarded`."""
    host = store.plugins
    providers = host.telemetry
    for name in sorted(providers):
        who = host.describe("telemetry", name)
        opening = _opening.setdefault(who, TelemetryFaults(who))
        telemetry = opening.report("for_store", providers[name].for_store, store)
        if telemetry is not None:
            instruments = _Instruments(guarded(telemetry, who), writer.groups)
            instruments.wrap(store, store.backend, writer, pipeline, taker, reconstructor)
            _installed[store] = weakref.ref(instruments)
            return


class _Local(threading.local):
    """Per thread: inside an observed append, and the commit it made."""

    active = False
    commit: Span | None = None


class _ObservedWrite:
    """A backend's write transaction, timing its commit (the context's exit)."""

    __slots__ = ("_inner", "_instruments")

    def __init__(self, instruments: _Instruments, inner: AbstractContextManager[Any]) -> None:
        self._instruments = instruments
        self._inner = inner

    def __enter__(self) -> Any:
        return self._inner.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: Any, traceback: Any) -> Any:
        if kind is not None:
            return self._inner.__exit__(kind, error, traceback)
        committing = time.time_ns()
        self._inner.__exit__(None, None, None)
        instruments = self._instruments
        commit = instruments.local.commit = (committing, time.time_ns())
        instruments.telemetry.committed(commit, instruments.durable)
        return None


class _Instruments:
    """Wraps one store's parts, per instance, so that they report to ``telemetry``."""

    def __init__(self, telemetry: StoreTelemetry, durable: bool) -> None:
        self.telemetry = telemetry
        self.durable = durable
        self.local = _Local()

    def wrap(
        self,
        store: Any,
        backend: Backend,
        writer: Writer,
        pipeline: AppendPipeline,
        taker: SnapshotTaker,
        reconstructor: StateReconstructor,
    ) -> None:
        """Replace the parts' methods on these instances (not on their classes)."""
        run, append, write = writer.run, writer.append, backend.write
        encode, take, reconstruct = pipeline.encode, taker.take, reconstructor.reconstruct
        local, telemetry = self.local, self.telemetry
        check_integrity = store.check_integrity

        def observed(
            write: Callable[..., CommitResult], encoded: list[Encoded], *arguments: Any
        ) -> CommitResult:
            """``write(*arguments)``, one append, timed and reported once."""
            local.active = True
            local.commit = None
            started = time.time_ns()
            try:
                result = write(*arguments)
            except Exception as exc:
                self._failed(exc, started)
                raise
            finally:
                local.active = False
            telemetry.appended(encoded, result, (started, time.time_ns()), local.commit)
            return result

        def observed_run(
            work: Work,
            encoded: list[Encoded],
            expected: dict[str, int] | None,
            batch: bool,
            deliver: bool = True,
        ) -> CommitResult:
            if local.active:  # a group commit's lone append runs run(): observed once
                return run(work, encoded, expected, batch, deliver)
            return observed(run, encoded, work, encoded, expected, batch, deliver)

        def observed_append(
            encoded: list[Encoded], expected: dict[str, int] | None, batch: bool
        ) -> CommitResult:
            return observed(append, encoded, encoded, expected, batch)

        def observed_encode(items: Sequence[object], *, batch: bool) -> list[Encoded]:
            started = time.time_ns()
            try:
                return encode(items, batch=batch)
            except InvalidEvent as exc:
                self._failed(exc, started)
                raise

        def observed_take(offset: int | None, *, automatic: bool) -> StoredSnapshot | None:
            started = time.time_ns()
            taken = take(offset, automatic=automatic)
            if taken is not None:
                telemetry.snapshot_taken(taken, (started, time.time_ns()))
            return taken

        def observed_reconstruct(kind: str, entity_id: str, at: int | None = None) -> Any:
            started = time.time_ns()
            state = reconstruct(kind, entity_id, at)
            telemetry.reconstructed(kind, (started, time.time_ns()))
            return state

        def observed_check(
            *, witnesses: Iterable[Witness] = (), progress: Callable[[int, int], Any] | None = None
        ) -> VerifyReport:
            started = time.time_ns()
            try:
                report: VerifyReport = check_integrity(witnesses=witnesses, progress=progress)
            except IntegrityError as exc:
                telemetry.verified(exc.offset, exc, (started, time.time_ns()))
                raise
            telemetry.verified(report.records, None, (started, time.time_ns()))
            return report

        def observed_write() -> _ObservedWrite:
            return _ObservedWrite(self, write())

        # Instance attributes shadow the class's methods for this store only.
        writer.run = observed_run  # type: ignore[method-assign]
        if writer.groups:  # the store appends through append() (which may call run())
            writer.append = observed_append  # type: ignore[method-assign]
        backend.write = observed_write  # type: ignore[method-assign]
        pipeline.encode = observed_encode  # type: ignore[method-assign]
        taker.take = observed_take  # type: ignore[method-assign]
        reconstructor.reconstruct = observed_reconstruct  # type: ignore[method-assign]
        store.check_integrity = observed_check  # what verify() runs

    def _failed(self, error: Exception, started: int) -> None:
        """Report a refused append (a failing backend is no refusal: not reported)."""
        rule = refusal_rule(error)
        if rule is not None:
            self.telemetry.refused(rule, error, (started, time.time_ns()))
