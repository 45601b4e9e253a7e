"""The plugin module the ``chanlog`` entry point names: registers the ``otel`` telemetry
provider and forgets a store when it closes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.plugins.hookspecs import hookimpl
from chanlog_otel.provider import OtelProvider, forget

__all__ = ["PROVIDER", "chanlog_register_telemetry", "chanlog_store_closing"]

PROVIDER = OtelProvider()
"""The provider registered as ``otel``: it follows the global OpenTelemetry providers."""


@hookimpl
def chanlog_register_telemetry(register: Callable[[str, Any], None]) -> None:
    """Register :data:`PROVIDER` as telemetry provider ``otel``."""
    register("otel", PROVIDER)


@hookimpl
def chanlog_store_closing(store: Any) -> None:
    """Stop reading a closing store's figures when metrics are collected."""
    forget(store)
