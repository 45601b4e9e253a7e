"""Fixtures of the chanlog-otel tests: OpenTelemetry SDK providers with in-memory exporters,
handed to a provider of the test's own (the process's global providers are never set here:
they can be set only once per process), and a plugin host that registers it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from chanlog_otel import OtelProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost


@attrs.define
class Sdk:
    """SDK providers whose spans and metrics the test reads."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def points(self) -> dict[str, list[Any]]:
        """Metric name → its data points now."""
        found: dict[str, list[Any]] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter's (or a gauge's) points whose attributes include these."""
        total: float = sum(
            point.value
            for point in self.points().get(name, [])
            if all(point.attributes.get(k) == v for k, v in attributes.items())
        )
        return total


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """Fresh SDK providers with in-memory exporters."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Sdk(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


class _Registers:
    def __init__(self, provider: OtelProvider) -> None:
        self.provider = provider

    @hookimpl
    def chanlog_register_telemetry(self, register: Callable[[str, Any], None]) -> None:
        register("test-otel", self.provider)


@pytest.fixture
def host(sdk: Sdk) -> PluginHost:
    """A plugin host with the entry points and a provider reporting to ``sdk``."""
    host = PluginHost()
    host.register(_Registers(OtelProvider(sdk.tracer_provider, sdk.meter_provider)), "test-otel")
    return host
