"""The instruments (spans, counters, histograms, gauges) and the telemetry of one store, of
one consumer and of one relay, implementing :mod:`chanlog.telemetry`'s protocols.

Every metric is listed, with its unit and meaning, in the operating guide
(``docs/guides/operating.md``, "Metrics"). Gauges are read from the stores' backends when
metrics are collected, so they are right whichever process wrote the log.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TracerProvider,
    set_span_in_context,
    use_span,
)

from chanlog.bus.subjects import subject_parts
from chanlog.errors import ChanlogError
from chanlog.records import RecordedEvent, StoredSnapshot
from chanlog.telemetry import Span, figures
from chanlog_otel import names

if TYPE_CHECKING:
    from chanlog.appending import CommitResult, Encoded

__all__ = ["ConsumerInstruments", "Instruments", "RelayInstruments", "StoreInstruments"]

logger = logging.getLogger("chanlog.otel")

_SECONDS = (
    0.00001,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BYTES = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9)
_RECENT = 4096  # append span contexts kept to link a consumer's span to its append's
_FRESH = 0.5  # seconds the figures of one collection are reused by its other gauges


_SINGLE = (("chanlog.append.kind", "single"),)
_BATCH = (("chanlog.append.kind", "batch"),)
_OK = (("chanlog.verify.result", "ok"),)
_FAILED = (("chanlog.verify.result", "failed"),)
_KIND = {_SINGLE: dict(_SINGLE), _BATCH: dict(_BATCH)}

Attributes = tuple[tuple[str, Any], ...]


def _seconds(span: Span) -> float:
    return (span[1] - span[0]) / 1e9


class _Counter:
    """A counter summed in the process and observed when metrics are collected: an add
    costs a dict update under a lock, not the SDK's measurement path (several microseconds
    per call, measured on appends: ADR 0035)."""

    def __init__(self, meter: Meter, name: str, unit: str, description: str) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Attributes, int] = {}
        meter.create_observable_counter(name, [self._observe], unit, description)

    def add(self, amount: int, attributes: Attributes = ()) -> None:
        """Add ``amount`` to the count of these attributes."""
        with self._lock:
            self._counts[attributes] = self._counts.get(attributes, 0) + amount

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(count, dict(attributes)) for attributes, count in counts]


class Instruments:
    """Everything created once per pair of OpenTelemetry providers: the tracer, the
    instruments, the stores and relays the gauges read, and the recent append spans.

    Args:
        tracer_provider: where spans go (``None``: no spans are made at all).
        meter_provider: where metrics go (``None``: none are recorded).
    """

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        self.tracer = None if tracer_provider is None else tracer_provider.get_tracer(names.SCOPE)
        self.metering = meter_provider is not None
        self._stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self._relays: list[RelayInstruments] = []
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, SpanContext] = OrderedDict()
        self._figures: dict[int, tuple[float, dict[str, Any]]] = {}
        self.last_verified: float | None = None
        if meter_provider is not None:
            self._create(meter_provider)

    def _create(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(names.SCOPE)
        self.appends = _Counter(
            meter, "chanlog.appends", "{append}", "Appends committed (one event or a batch)"
        )
        self.events = _Counter(
            meter, "chanlog.appended.events", "{event}", "Events appended (written to the log)"
        )
        self.refusals = _Counter(
            meter,
            "chanlog.append.refusals",
            "{append}",
            "Appends refused, by rule (nothing written)",
        )
        self.append_duration = meter.create_histogram(
            "chanlog.append.duration",
            "s",
            "Time an append took, encoding to delivery",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.commit_duration = meter.create_histogram(
            "chanlog.commit.duration",
            "s",
            "Time the backend took to commit a write transaction",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.fsyncs = _Counter(
            meter,
            "chanlog.commit.fsyncs",
            "{commit}",
            "Commits the backend made durable there and then (an fsync, a database commit)",
        )
        self.reconstruct_duration = meter.create_histogram(
            "chanlog.reconstruct.duration",
            "s",
            "Time one entity's reconstruction took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.snapshot_duration = meter.create_histogram(
            "chanlog.snapshot.duration",
            "s",
            "Time taking and storing a snapshot took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.verify_duration = meter.create_histogram(
            "chanlog.verify.duration",
            "s",
            "Time a verify of the log took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.verifies = _Counter(
            meter, "chanlog.verify.runs", "{run}", "Verifies of the log, by result (ok, failed)"
        )
        meter.create_observable_gauge(
            "chanlog.verify.last_success",
            [self._last_verified],
            "s",
            "When a verify of the log last passed in this process (Unix time)",
        )
        self.snapshot_size = meter.create_histogram(
            "chanlog.snapshot.size",
            "By",
            "Size of a snapshot taken",
            explicit_bucket_boundaries_advisory=_BYTES,
        )
        self.handled = _Counter(
            meter, "chanlog.consumer.handled", "{record}", "Records a consumer's handler handled"
        )
        self.failures = _Counter(
            meter, "chanlog.consumer.failures", "{try}", "Tries of a consumer's handler that failed"
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            "s",
            "Time one try of a consumer's handler took",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.relay_sent = _Counter(
            meter, "chanlog.relay.sent", "{message}", "Records a relay handed to its broker"
        )
        meter.create_observable_counter(
            "chanlog.log.records",
            [self._records],
            "{record}",
            "Records in the log, whichever process appended them (its growth is the rate)",
        )
        gauge = meter.create_observable_gauge
        gauge("chanlog.snapshots.stored", [self._snapshots], "{snapshot}", "Snapshots stored")
        gauge("chanlog.snapshots.size", [self._snapshot_bytes], "By", "Bytes of stored snapshots")
        gauge("chanlog.consumer.lag", [self._lag], "{record}", "Matching records not yet handled")
        gauge("chanlog.consumer.parked", [self._parked], "{record}", "Records a consumer parked")
        gauge("chanlog.consumer.position", [self._position], "{record}", "Committed position")
        meter.create_observable_counter(
            "chanlog.relay.acknowledged",
            [self._relay_acknowledged],
            "{message}",
            "Records the relay's broker acknowledged (since the relay started)",
        )
        gauge("chanlog.relay.in_flight", [self._relay_in_flight], "{message}", "Not yet acked")
        gauge("chanlog.relay.lag", [self._relay_lag], "{record}", "Records not yet acknowledged")

    # -- stores, relays, recent spans ----------------------------------------------------

    def watch(self, store: Any) -> StoreInstruments:
        """The telemetry of ``store``, whose figures the gauges now read."""
        with self._lock:
            self._stores.add(store)
        return StoreInstruments(self, store)

    def forget(self, store: Any) -> None:
        """Stop reading ``store`` (and its relays)."""
        with self._lock:
            self._stores.discard(store)
            self._relays = [relay for relay in self._relays if relay.store is not store]
            self._figures.pop(id(store), None)

    def add_relay(self, relay: RelayInstruments) -> None:
        """Read ``relay``'s figures when metrics are collected."""
        with self._lock:
            self._relays.append(relay)

    def remember(self, event_id: str, context: SpanContext) -> None:
        """The span of the append that wrote ``event_id`` (kept for the most recent)."""
        with self._lock:
            recent = self._recent
            recent[event_id] = context
            if len(recent) > _RECENT:
                recent.popitem(last=False)

    def append_span(self, event_id: str) -> SpanContext | None:
        """The span of the append that wrote ``event_id``, if it is recent and was made
        in this process."""
        with self._lock:
            return self._recent.get(event_id)

    # -- gauges --------------------------------------------------------------------------

    def _every_figures(self) -> list[dict[str, Any]]:
        """Each watched store's :func:`~chanlog.telemetry.figures`, read at most once per
        collection (the gauges of one scrape share them)."""
        with self._lock:
            stores = list(self._stores)
        found = []
        now = time.monotonic()
        for store in stores:
            cached = self._figures.get(id(store))
            if cached is not None and now - cached[0] < _FRESH:
                found.append(cached[1])
                continue
            try:
                read = figures(store)
            except ChanlogError as exc:
                logger.warning("reading the log's figures failed: %s", exc)
                continue
            self._figures[id(store)] = (now, read)
            found.append(read)
        return found

    def _records(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read["records"]) for read in self._every_figures()]

    def _snapshots(self, _options: CallbackOptions) -> Iterable[Observation]:
        every = self._every_figures()
        return [Observation(read["snapshots"]["count"]) for read in every if read["snapshots"]]

    def _snapshot_bytes(self, _options: CallbackOptions) -> Iterable[Observation]:
        every = self._every_figures()
        return [Observation(read["snapshots"]["bytes"]) for read in every if read["snapshots"]]

    def _consumer_figure(self, key: str) -> Iterable[Observation]:
        return [
            Observation(figure[key], {names.CONSUMER: name})
            for read in self._every_figures()
            for name, figure in read["consumers"].items()
        ]

    def _lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._consumer_figure("lag")

    def _parked(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._consumer_figure("parked")

    def _position(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._consumer_figure("position")

    def _last_verified(self, _options: CallbackOptions) -> Iterable[Observation]:
        last = self.last_verified
        return [] if last is None else [Observation(last)]

    def _relay_figure(self, read: Callable[[RelayInstruments], int]) -> Iterable[Observation]:
        with self._lock:
            relays = list(self._relays)
        found = []
        for relay in relays:
            try:
                found.append(Observation(read(relay), relay.attributes))
            except ChanlogError as exc:
                logger.warning("reading relay %s's figures failed: %s", relay.consumer, exc)
        return found

    def _relay_acknowledged(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._relay_figure(lambda relay: int(relay.stats().get("published", 0)))

    def _relay_in_flight(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._relay_figure(lambda relay: int(relay.stats().get("in_flight", 0)))

    def _relay_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._relay_figure(RelayInstruments.lag)


class StoreInstruments:
    """The :class:`~chanlog.telemetry.StoreTelemetry` of one store."""

    def __init__(self, instruments: Instruments, store: Any) -> None:
        self._instruments = instruments
        self.store = store
        self._prefix: str = store.bus.prefix

    def _subject(self, encoded: Encoded) -> str:
        event = encoded.event
        group, event_type, entity = subject_parts(
            type(event).group, event.event_type, event.streams
        )
        return f"{self._prefix}.{group}.{event_type}.{entity}"

    def appended(
        self, encoded: Sequence[Encoded], result: CommitResult, span: Span, commit: Span | None
    ) -> None:
        """Count the append; make its ``publish`` span (and its commit's, a child)."""
        instruments = self._instruments
        batch = len(encoded) != 1
        if instruments.metering:
            kind = _BATCH if batch else _SINGLE
            instruments.appends.add(1, kind)
            if result.records:
                instruments.events.add(len(result.records))
            instruments.append_duration.record(_seconds(span), _KIND[kind])
        tracer = instruments.tracer
        if tracer is None:
            return
        attributes: dict[str, Any] = {
            names.SYSTEM: names.SYSTEM_NAME,
            names.OPERATION_NAME: "publish",
            names.OPERATION_TYPE: "send",
        }
        if result.offsets:
            attributes[names.OFFSET] = result.offsets[0]
        if batch:
            attributes[names.BATCH_COUNT] = len(encoded)
            attributes[names.DESTINATION] = self._prefix
        elif encoded:
            attributes[names.MESSAGE_ID] = "0x" + encoded[0].raw_id.hex()
            attributes[names.DESTINATION] = self._subject(encoded[0])
        append = tracer.start_span(
            f"publish {self._prefix}",
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            start_time=span[0],
        )
        context = append.get_span_context()
        for item in encoded:
            instruments.remember("0x" + item.raw_id.hex(), context)
        if commit is not None:
            child = tracer.start_span(
                "chanlog commit",
                context=set_span_in_context(append),
                start_time=commit[0],
                attributes={names.SYSTEM: names.SYSTEM_NAME},
            )
            child.end(end_time=commit[1])
        append.end(end_time=span[1])

    def refused(self, rule: str, error: Exception, span: Span) -> None:
        """Count the refusal by rule; an errored span."""
        instruments = self._instruments
        if instruments.metering:
            instruments.refusals.add(
                1, ((names.RULE, rule), (names.ERROR_TYPE, type(error).__name__))
            )
        if instruments.tracer is not None:
            refused = instruments.tracer.start_span(
                f"publish {self._prefix}",
                kind=SpanKind.PRODUCER,
                attributes={
                    names.SYSTEM: names.SYSTEM_NAME,
                    names.OPERATION_NAME: "publish",
                    names.RULE: rule,
                    names.ERROR_TYPE: type(error).__name__,
                },
                start_time=span[0],
            )
            refused.set_status(Status(StatusCode.ERROR, str(error)))
            refused.end(end_time=span[1])

    def committed(self, span: Span, durable: bool) -> None:
        """Record the commit's latency (and its fsync)."""
        instruments = self._instruments
        if instruments.metering:
            instruments.commit_duration.record(_seconds(span))
            if durable:
                instruments.fsyncs.add(1)

    def reconstructed(self, kind: str, span: Span) -> None:
        """Record the reconstruction's latency; a span."""
        instruments = self._instruments
        attributes = {names.ENTITY_KIND: kind}
        if instruments.metering:
            instruments.reconstruct_duration.record(_seconds(span), attributes)
        if instruments.tracer is not None:
            instruments.tracer.start_span(
                "chanlog reconstruct", attributes=attributes, start_time=span[0]
            ).end(end_time=span[1])

    def verified(self, records: int, error: Exception | None, span: Span) -> None:
        """Record the verify's result and duration (and when it last passed); a span."""
        instruments = self._instruments
        if instruments.metering:
            instruments.verify_duration.record(_seconds(span))
            instruments.verifies.add(1, _OK if error is None else _FAILED)
            if error is None:
                instruments.last_verified = span[1] / 1e9
        if instruments.tracer is not None:
            checked = instruments.tracer.start_span(
                "chanlog verify", attributes={"chanlog.verify.records": records}, start_time=span[0]
            )
            if error is not None:
                checked.set_status(Status(StatusCode.ERROR, str(error)))
                checked.set_attribute(names.OFFSET, records)
            checked.end(end_time=span[1])

    def snapshot_taken(self, snapshot: StoredSnapshot, span: Span) -> None:
        """Record the snapshot's size and duration; a span."""
        instruments = self._instruments
        if instruments.metering:
            instruments.snapshot_duration.record(_seconds(span))
            instruments.snapshot_size.record(len(snapshot.data))
        if instruments.tracer is not None:
            instruments.tracer.start_span(
                "chanlog snapshot",
                attributes={
                    names.OFFSET: snapshot.offset,
                    "chanlog.snapshot.size": len(snapshot.data),
                },
                start_time=span[0],
            ).end(end_time=span[1])

    def consumer(self, name: str) -> ConsumerInstruments:
        """The telemetry of consumer ``name``."""
        return ConsumerInstruments(self._instruments, name, self._prefix)

    def relay(
        self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]
    ) -> RelayInstruments:
        """The telemetry of a relay run by ``consumer``, read by the gauges from now on."""
        relay = RelayInstruments(self._instruments, self.store, consumer, system, stats)
        self._instruments.add_relay(relay)
        return relay


class _Processing:
    """The context of one try of a consumer's handler: a ``process`` span (current, so
    the handler's own spans are its children), its duration, handled or failed."""

    __slots__ = ("_attributes", "_consumer", "_record", "_scope", "_span", "_started")

    def __init__(self, consumer: ConsumerInstruments, record: RecordedEvent) -> None:
        self._consumer = consumer
        self._record = record
        self._span: Any = None
        self._scope: Any = None
        self._started = 0

    def __enter__(self) -> object:
        consumer = self._consumer
        tracer = consumer.instruments.tracer
        self._started = time.perf_counter_ns()
        if tracer is not None:
            record = self._record
            linked = consumer.instruments.append_span(record.event_id)
            self._span = tracer.start_span(
                f"process {consumer.name}",
                kind=SpanKind.CONSUMER,
                attributes={
                    names.SYSTEM: names.SYSTEM_NAME,
                    names.OPERATION_NAME: "process",
                    names.OPERATION_TYPE: "process",
                    names.CONSUMER: consumer.name,
                    names.MESSAGE_ID: record.event_id,
                    names.OFFSET: record.offset,
                    names.DESTINATION: consumer.subject(record),
                },
                links=None if linked is None else [Link(linked)],
            )
            self._scope = use_span(self._span, end_on_exit=False)
            self._scope.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any
    ) -> None:
        consumer = self._consumer
        instruments = consumer.instruments
        if instruments.metering:
            attributes = consumer.attributes
            instruments.process_duration.record(
                (time.perf_counter_ns() - self._started) / 1e9, attributes
            )
            if error is None:
                instruments.handled.add(1, consumer.key)
            else:
                instruments.failures.add(
                    1, (*consumer.key, (names.ERROR_TYPE, type(error).__name__))
                )
        span = self._span
        if span is not None:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                span.set_attribute(names.ERROR_TYPE, type(error).__name__)
            self._scope.__exit__(kind, error, _tb)
            span.end()


class ConsumerInstruments:
    """The :class:`~chanlog.telemetry.ConsumerTelemetry` of one durable consumer."""

    def __init__(self, instruments: Instruments, name: str, prefix: str) -> None:
        self.instruments = instruments
        self.name = name
        self.prefix = prefix
        self.attributes = {names.CONSUMER: name}
        self.key = ((names.CONSUMER, name),)

    def subject(self, record: RecordedEvent) -> str:
        """The record's subject on this node."""
        event = record.event
        group, event_type, entity = subject_parts(
            type(event).group, event.event_type, event.streams
        )
        return f"{self.prefix}.{group}.{event_type}.{entity}"

    def processing(self, record: RecordedEvent) -> _Processing:
        """Around one try of the handler on ``record``."""
        return _Processing(self, record)


class RelayInstruments:
    """The :class:`~chanlog.telemetry.RelayTelemetry` of one relay."""

    def __init__(
        self,
        instruments: Instruments,
        store: Any,
        consumer: str,
        system: str,
        stats: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.instruments = instruments
        self.store = store
        self.consumer = consumer
        self.system = system
        self.stats = stats
        self.attributes = {names.SYSTEM: system, names.CONSUMER: consumer}
        self.key = tuple(self.attributes.items())

    def lag(self) -> int:
        """Records of the log not yet acknowledged by the broker."""
        stats = self.stats()
        settled = stats.get("settled")
        done = settled if settled is not None else stats.get("next_offset", 0)
        return max(0, len(self.store) - int(done))

    def published(self, record: RecordedEvent, subject: str) -> None:
        """Count the hand-over; a ``publish`` span linked to the append's."""
        instruments = self.instruments
        if instruments.metering:
            instruments.relay_sent.add(1, self.key)
        tracer = instruments.tracer
        if tracer is None:
            return
        linked = instruments.append_span(record.event_id)
        tracer.start_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes={
                **self.attributes,
                names.OPERATION_NAME: "publish",
                names.OPERATION_TYPE: "send",
                names.DESTINATION: subject,
                names.MESSAGE_ID: record.event_id,
                names.OFFSET: record.offset,
            },
            links=None if linked is None else [Link(linked)],
        ).end()
