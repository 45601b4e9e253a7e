"""Telemetry attaches only when it is wanted: with the plugin installed and no OpenTelemetry
SDK configured, a store is not instrumented at all."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from typing import Any

import pytest
from chanlog_otel import OtelProvider, sdk_configured
from chanlog_otel.plugin import PROVIDER
from opentelemetry import metrics, trace

import chanlog
from chanlog.errors import PluginError
from chanlog.plugins import default_host
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from chanlog.telemetry import telemetry_of


def test_the_plugin_registers_the_otel_provider() -> None:
    assert default_host().telemetry["otel"] is PROVIDER


def test_no_sdk_no_instrumentation() -> None:
    # This process never sets global providers (tests hand theirs to a provider).
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert sdk_configured() == (False, False)
    assert PROVIDER.for_store(object()) is None
    with chanlog.EventStore() as store:
        assert telemetry_of(store) is None
        # Nothing wrapped: the parts' methods are their classes'.
        assert "write" not in vars(store.backend)
        assert "reconstruct" not in vars(store.reconstructor)


def test_given_providers_instrument_whatever_the_globals(host: PluginHost) -> None:
    with chanlog.EventStore(plugins=host) as store:
        assert telemetry_of(store) is not None
        assert "write" in vars(store.backend)


def test_a_global_sdk_set_before_the_store_opens_instruments_it() -> None:
    code = """
import chanlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from chanlog.telemetry import telemetry_of
from chanlog.workload.generator import Workload

with chanlog.EventStore() as before:
    assert telemetry_of(before) is None
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
with chanlog.EventStore() as store:
    assert telemetry_of(store) is not None
    store.append(Workload(channels=1).events()[0])
print(sorted(span.name for span in exporter.get_finished_spans()))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV_CORE_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['chanlog commit', 'publish chanlog']"


def test_a_provider_without_the_methods_is_refused() -> None:
    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Any) -> None:
            register("broken", object())

    host = PluginHost()
    with pytest.raises(PluginError, match="for_store"):
        host.register(Registers(), "broken")


def test_only_metrics_makes_no_spans(sdk: Any) -> None:
    provider = OtelProvider(meter_provider=sdk.meter_provider)
    instruments = provider.instruments()
    assert instruments is not None
    assert instruments.tracer is None
    assert instruments.metering
    assert metrics.get_meter_provider() is not sdk.meter_provider  # globals untouched


def test_an_instrumented_store_is_freed(host: PluginHost) -> None:
    with chanlog.EventStore(plugins=host) as store:
        assert telemetry_of(store) is not None
        freed = weakref.ref(store)
    del store
    gc.collect()
    assert freed() is None
