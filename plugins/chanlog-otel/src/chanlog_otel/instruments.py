"""The instruments (tracer, counters, histograms, gauges), created once per pair of
OpenTelemetry providers, and what the gauges read when metrics are collected. What reports to
them is :mod:`chanlog_otel.reporting`.

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.trace import SpanContext, TracerProvider

from chanlog.errors import ChanlogError
from chanlog.failure_log import FailureLog
from chanlog.telemetry import figures
from chanlog_otel import names

__all__ = ["Attributes", "Instruments", "Relay"]

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


Attributes = tuple[tuple[str, Any], ...]
"""Metric attributes as a hashable key."""


class Relay(Protocol):
    """What the gauges read of a relay (:class:`~chanlog_otel.reporting.RelayInstruments`)."""

    store: weakref.ref[Any]
    consumer: str
    attributes: dict[str, str]
    stats: Callable[[], Mapping[str, Any]]

    def lag(self) -> int:
        """Records of the log not yet acknowledged by the broker."""
        ...


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
        self._relays: list[Relay] = []
        self._lock = threading.Lock()
        self._recent: OrderedDict[str, SpanContext] = OrderedDict()
        # By store: the figures read last (None: the read failed) and when, and how their
        # reads' failures are said (once, then each minute, then when they work again).
        self._figures: dict[int, tuple[float, dict[str, Any] | None]] = {}
        self._said: dict[int, FailureLog] = {}
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

    def watch(self, store: Any) -> None:
        """Read ``store``'s figures when metrics are collected."""
        with self._lock:
            self._stores.add(store)

    def forget(self, store: Any) -> None:
        """Stop reading ``store`` (and its relays)."""
        with self._lock:
            self._stores.discard(store)
            self._relays = [relay for relay in self._relays if relay.store() not in (store, None)]
            self._figures.pop(id(store), None)
            self._said.pop(id(store), None)

    def add_relay(self, relay: Relay) -> None:
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
        collection (the gauges of one scrape share them, and a failed read too: a failing
        backend is asked once per scrape, and said to fail once, ADR 0073)."""
        with self._lock:
            stores = list(self._stores)
        found = []
        now = time.monotonic()
        for store in stores:
            cached = self._figures.get(id(store))
            if cached is None or now - cached[0] >= _FRESH:
                cached = self._figures[id(store)] = (now, self._read(store))
            if cached[1] is not None:
                found.append(cached[1])
        return found

    def _read(self, store: Any) -> dict[str, Any] | None:
        """``store``'s figures, or ``None`` when they cannot be read (said once)."""
        said = self._said.get(id(store))
        if said is None:
            said = self._said[id(store)] = FailureLog(
                logger,
                "reading the log's figures for the gauges",
                "the store's gauges are left out of the collections meanwhile",
                then="read again at the next collection",
            )
        try:
            read = figures(store)
        except Exception as exc:  # a gauge's reading fails alone, whatever the backend raised
            said.failed(exc, logging.WARNING)
            return None
        said.succeeded()
        return read

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

    def _relay_figure(self, read: Callable[[Relay], int]) -> Iterable[Observation]:
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
        return self._relay_figure(lambda relay: relay.lag())
