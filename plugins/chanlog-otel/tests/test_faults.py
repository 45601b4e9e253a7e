"""An OpenTelemetry SDK that misbehaves changes nothing the store or a consumer does, and says
so once (ADR 0073): a span processor that raises, gauges read while the backend fails, and
trace context carriers that are not what a relay sends."""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest
from chanlog_otel import OtelProvider, instruments
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import chanlog
from chanlog.errors import StorageError
from chanlog.plugins.host import PluginHost
from chanlog.records import Head
from chanlog.telemetry import ContinuesTraces, telemetry_of
from chanlog.testing import FlakyBackend, sample_events
from fake_telemetry import host_with

VALID = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"


class RaisingProcessor(SimpleSpanProcessor):
    """Exports nothing; raises when a span starts or ends (a broken exporter's processor)."""

    def __init__(self) -> None:
        super().__init__(InMemorySpanExporter())

    def on_start(self, span: SdkSpan, parent_context: Any = None) -> None:
        raise RuntimeError("span processor broke")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("span processor broke")


def _host(provider: OtelProvider) -> PluginHost:
    return host_with(**{"test-otel": provider})


def test_a_span_processor_that_raises_changes_no_append_and_parks_no_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(RaisingProcessor())
    handled: list[int] = []
    with (
        caplog.at_level(logging.ERROR, "chanlog.telemetry"),
        chanlog.EventStore(plugins=_host(OtelProvider(tracer_provider)), projections=[]) as store,
    ):
        events = sample_events(5)
        assert store.append(events[0]) == 0
        assert store.append_batch(events[1:]) == [1, 2, 3, 4]
        with store.bus.consumer("c", lambda r: handled.append(r.offset), max_deliver=1) as run:
            run.drain()
        (info,) = store.bus.consumers.infos()
    assert (handled, info.state.parked) == ([0, 1, 2, 3, 4], 0)
    said = sorted({r.getMessage().split(" failed")[0] for r in caplog.records})
    assert said == [
        "telemetry provider 'test-otel' (registered by plugin 'fake-telemetry') at appended",
        "telemetry provider 'test-otel' (registered by plugin 'fake-telemetry') at processing",
    ]
    assert len(caplog.records) == 2  # once each, not at every append or try


class Restarting(FlakyBackend):
    """A memory backend whose head, too, fails while ``down`` (a database restarting)."""

    down = False
    heads = 0

    def head(self) -> Head:
        self.heads += 1
        if self.down:
            raise StorageError(self.message)
        return super().head()


def test_gauges_read_while_the_backend_fails_say_it_once(
    sdk: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the gauges' clock: each scrape a second after the last
    monkeypatch.setattr(instruments, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    backend = Restarting()
    provider = OtelProvider(meter_provider=sdk.meter_provider)
    with (
        caplog.at_level(logging.INFO, "chanlog.otel"),
        chanlog.EventStore(backend, plugins=_host(provider), projections=[]) as store,
    ):
        store.append_batch(sample_events(3))
        backend.down = True
        for _ in range(5):
            now[0] += 1
            backend.heads = 0
            assert "chanlog.log.records" not in sdk.points()
            assert backend.heads == 1  # one read per scrape, shared by every gauge
        backend.down = False
        now[0] += 1
        assert sdk.total("chanlog.log.records") == 3
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "chanlog.otel"]
    assert [level for level, _ in lines] == ["WARNING", "WARNING"]
    assert lines[0][1].startswith("reading the log's figures for the gauges failed")
    assert "works again" in lines[1][1]


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": VALID, "tracestate": 5},
        {"traceparent": VALID, "baggage": b"k=v"},
        {"traceparent": VALID.encode()},
        ["traceparent", VALID],
        "traceparent",
    ],
    ids=["int-tracestate", "bytes-baggage", "bytes-traceparent", "list", "str"],
)
def test_a_malformed_carrier_is_a_message_without_a_trace(
    sdk: Any, host: PluginHost, carrier: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        chanlog.EventStore(plugins=host, projections=[]) as replica,
    ):
        telemetry = telemetry_of(replica)
        assert isinstance(telemetry, ContinuesTraces)
        with telemetry.received("nats", "NODE", [carrier, {"traceparent": VALID}]):
            replica.append_batch(sample_events(2))
        assert len(replica) == 2
    (process,) = [s for s in sdk.spans.get_finished_spans() if s.name == "process NODE"]
    valid = [link for link in process.links if link.context.trace_id == int("ab" * 16, 16)]
    assert len(valid) >= 1  # the well-formed message's trace, at least, goes on
    assert [r.getMessage() for r in caplog.records if r.name.startswith("chanlog")] == []
