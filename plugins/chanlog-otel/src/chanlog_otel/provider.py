"""The ``otel`` telemetry provider: instruments a store when an OpenTelemetry SDK is
configured, and serves Prometheus text for ``chanlog run --metrics``.

Telemetry is *wanted* when the global tracer provider or the global meter provider is no
longer the API's default (a proxy that does nothing until an SDK is set), or when the
provider was given SDK providers explicitly. Otherwise :meth:`OtelProvider.for_store`
returns ``None`` and the store runs uninstrumented: a library user with this plugin
installed and no SDK configured pays nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, TracerProvider

from chanlog.errors import ConfigError
from chanlog_otel.instruments import Instruments
from chanlog_otel.reporting import StoreInstruments

__all__ = ["OtelProvider", "forget", "sdk_configured"]


def _meter_is_default(provider: MeterProvider) -> bool:
    # The API's proxy class is private; it is recognised by name (and NoOp by type).
    return isinstance(provider, NoOpMeterProvider) or type(provider).__name__ == (
        "_ProxyMeterProvider"
    )


def _tracer_is_default(provider: TracerProvider) -> bool:
    return isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)


def sdk_configured() -> tuple[bool, bool]:
    """Whether a real (SDK) tracer provider and meter provider are set globally."""
    return (
        not _tracer_is_default(trace.get_tracer_provider()),
        not _meter_is_default(metrics.get_meter_provider()),
    )


_lock = threading.Lock()
# By the identity of the providers, which the value keeps alive (so no id is reused).
_instruments: dict[tuple[int, int], tuple[Instruments, TracerProvider, MeterProvider]] = {}


def forget(store: Any) -> None:
    """Stop reading ``store``'s figures (it is closing)."""
    with _lock:
        every = [value[0] for value in _instruments.values()]
    for instruments in every:
        instruments.forget(store)


class OtelProvider:
    """A :class:`~chanlog.telemetry.TelemetryProvider` over OpenTelemetry.

    Args:
        tracer_provider: where spans go (default: the global one, looked up at each open).
        meter_provider: where metrics go (default: the global one).

    With both omitted, a store is instrumented only when a global SDK provider is set;
    given explicitly, they are used whatever the globals are (what tests do).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider

    def instruments(self) -> Instruments | None:
        """The instruments stores report to now (``None``: no SDK is configured)."""
        tracer_provider = self._tracer_provider or trace.get_tracer_provider()
        meter_provider = self._meter_provider or metrics.get_meter_provider()
        tracing = not _tracer_is_default(tracer_provider)
        metering = not _meter_is_default(meter_provider)
        if not (tracing or metering):
            return None
        key = (id(tracer_provider), id(meter_provider))
        with _lock:
            found = _instruments.get(key)
            if found is None:
                made = Instruments(
                    tracer_provider if tracing else None, meter_provider if metering else None
                )
                found = _instruments[key] = (made, tracer_provider, meter_provider)
        return found[0]

    def for_store(self, store: Any) -> StoreInstruments | None:
        """The telemetry of ``store``, or ``None`` when no SDK is configured."""
        instruments = self.instruments()
        if instruments is None:
            return None
        instruments.watch(store)
        return StoreInstruments(instruments, store)

    def serve_metrics(self, host: str, port: int) -> Callable[[], None]:
        """Set the global meter provider to an SDK one read by a Prometheus exporter, and
        serve Prometheus text on ``http://host:port/metrics``; return what stops serving.

        Raises:
            ConfigError: the address cannot be listened on, or a global meter provider
                is already set.
        """
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
        from prometheus_client import start_http_server

        if not _meter_is_default(metrics.get_meter_provider()):
            raise ConfigError("--metrics: a global OpenTelemetry meter provider is already set")
        try:
            server, thread = start_http_server(port, addr=host)
        except OSError as exc:
            raise ConfigError(f"--metrics {host}:{port}: cannot listen there ({exc})") from exc
        provider = SdkMeterProvider(metric_readers=[PrometheusMetricReader()])
        metrics.set_meter_provider(provider)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)
            provider.shutdown()

        return stop
