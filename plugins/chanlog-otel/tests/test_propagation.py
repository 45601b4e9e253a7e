"""What carries a record's trace to another process and continues it there (ADR 0062),
without a broker: the relay's headers, and the span an ingest appends in."""

from __future__ import annotations

from typing import Any

import pytest
from chanlog_otel import OtelProvider
from chanlog_otel.propagation import carrier_of
from opentelemetry.trace import SpanKind, StatusCode

import chanlog
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from chanlog.telemetry import ContinuesTraces, RelayTelemetry, telemetry_of
from chanlog.testing import sample_events


def _sent(sdk: Any) -> tuple[Any, dict[str, str]]:
    """A sender's span, and the headers that carry it."""
    span = sdk.tracer_provider.get_tracer("test").start_span("publish x.y")
    span.end()
    return span, carrier_of(span)


def test_a_relays_publish_span_is_carried_in_its_headers(host: PluginHost, sdk: Any) -> None:
    with chanlog.EventStore(plugins=host, projections=[]) as store:
        store.append_batch(sample_events(1))
        telemetry = telemetry_of(store)
        assert telemetry is not None
        relay = telemetry.relay("to-nats", "nats", lambda: {"published": 0, "in_flight": 0})
        assert isinstance(relay, RelayTelemetry)
        record = next(iter(store.read_range(0, 1)))
        headers = relay.published(record, "chanlog.x")
    (publish,) = [s for s in sdk.spans.get_finished_spans() if s.name == "publish chanlog.x"]
    trace, span = f"{publish.context.trace_id:032x}", f"{publish.context.span_id:016x}"
    assert headers is not None
    assert headers["traceparent"].split("-")[1:3] == [trace, span]


def test_a_failed_append_of_received_messages_is_an_errored_span(
    host: PluginHost, sdk: Any
) -> None:
    _, carrier = _sent(sdk)
    with chanlog.EventStore(plugins=host, projections=[]) as replica:
        telemetry = telemetry_of(replica)
        assert isinstance(telemetry, ContinuesTraces)
        with (
            pytest.raises(RuntimeError, match="refused"),
            telemetry.received("nats", "NODE", [carrier, None, {"traceparent": "garbage"}]),
        ):
            raise RuntimeError("refused")
    (process,) = [s for s in sdk.spans.get_finished_spans() if s.name == "process NODE"]
    assert process.kind is SpanKind.CONSUMER
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes["error.type"] == "RuntimeError"
    assert process.attributes["messaging.batch.message_count"] == 3
    assert len(process.links) == 1  # only the message that carried a valid trace
    assert process.parent is None


def test_without_a_tracer_nothing_is_carried_or_continued(sdk: Any) -> None:
    host = PluginHost()

    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Any) -> None:
            register("metrics-only", OtelProvider(meter_provider=sdk.meter_provider))

    host.register(Registers(), "metrics-only")
    with chanlog.EventStore(plugins=host, projections=[]) as store:
        store.append_batch(sample_events(1))
        telemetry = telemetry_of(store)
        assert isinstance(telemetry, ContinuesTraces)
        relay = telemetry.relay("to-nats", "nats", lambda: {"published": 0, "in_flight": 0})
        record = next(iter(store.read_range(0, 1)))
        assert relay.published(record, "chanlog.x") is None
        with telemetry.received("nats", "NODE", [{"traceparent": "x"}]):
            store.append_batch(sample_events(2)[1:])
    assert sdk.spans.get_finished_spans() == ()
