"""The telemetry of one store, of one durable consumer and of one relay: implementations of
:mod:`chanlog.telemetry`'s protocols reporting to :class:`~chanlog_otel.instruments.Instruments`
(spans named and attributed after OpenTelemetry's messaging conventions, ADR 0035)."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

from chanlog.bus.subjects import subject_parts
from chanlog.records import RecordedEvent, StoredSnapshot
from chanlog.telemetry import Span
from chanlog_otel import names
from chanlog_otel.instruments import Instruments
from chanlog_otel.propagation import Received, carrier_of
from chanlog_otel.spans import CurrentSpan

if TYPE_CHECKING:
    from chanlog.appending import CommitResult, Encoded

__all__ = ["ConsumerInstruments", "RelayInstruments", "StoreInstruments"]

_SINGLE = (("chanlog.append.kind", "single"),)
_BATCH = (("chanlog.append.kind", "batch"),)
_OK = (("chanlog.verify.result", "ok"),)
_FAILED = (("chanlog.verify.result", "failed"),)
_KIND = {_SINGLE: dict(_SINGLE), _BATCH: dict(_BATCH)}


def _seconds(span: Span) -> float:
    return (span[1] - span[0]) / 1e9


class StoreInstruments:
    """The :class:`~chanlog.telemetry.StoreTelemetry` of one store."""

    def __init__(self, instruments: Instruments, store: Any) -> None:
        self._instruments = instruments
        self._store = weakref.ref(store)  # the store keeps its telemetry, not the reverse
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

    def received(
        self, system: str, source: str, carriers: Sequence[Mapping[str, str] | None]
    ) -> AbstractContextManager[object]:
        """Around the append of messages an ingest received: a ``process`` span that
        continues their senders' traces (ADR 0062)."""
        tracer = self._instruments.tracer
        if tracer is None:
            return contextlib.nullcontext()
        return Received(tracer, system, source, carriers)

    def consumer(self, name: str) -> ConsumerInstruments:
        """The telemetry of consumer ``name``."""
        return ConsumerInstruments(self._instruments, name, self._prefix)

    def relay(
        self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]
    ) -> RelayInstruments:
        """The telemetry of a relay run by ``consumer``, read by the gauges from now on."""
        relay = RelayInstruments(self._instruments, self._store, consumer, system, stats)
        self._instruments.add_relay(relay)
        return relay


class _Processing:
    """The context of one try of a consumer's handler: a ``process`` span (current, so
    the handler's own spans are its children), its duration, handled or failed."""

    __slots__ = ("_consumer", "_current", "_record", "_started")

    def __init__(self, consumer: ConsumerInstruments, record: RecordedEvent) -> None:
        self._consumer = consumer
        self._record = record
        self._current: CurrentSpan | None = None
        self._started = 0

    def __enter__(self) -> object:
        consumer = self._consumer
        tracer = consumer.instruments.tracer
        self._started = time.perf_counter_ns()
        if tracer is not None:
            record = self._record
            linked = consumer.instruments.append_span(record.event_id)
            span = tracer.start_span(
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
            self._current = CurrentSpan(span)  # while the handler runs
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
        if self._current is not None:
            self._current.end(kind, error, _tb)


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
        store: weakref.ref[Any],
        consumer: str,
        system: str,
        stats: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.instruments = instruments
        self.store = store
        """The relay's store, weakly (the gauges forget a relay whose store closed)."""
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
        store = self.store()
        if store is None:
            return 0
        return max(0, len(store) - int(done))

    def published(self, record: RecordedEvent, subject: str) -> dict[str, str] | None:
        """Count the hand-over; a ``publish`` span linked to the append's, whose context
        the message carries (ADR 0062)."""
        instruments = self.instruments
        if instruments.metering:
            instruments.relay_sent.add(1, self.key)
        tracer = instruments.tracer
        if tracer is None:
            return None
        linked = instruments.append_span(record.event_id)
        span = tracer.start_span(
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
        )
        span.end()
        return carrier_of(span)
