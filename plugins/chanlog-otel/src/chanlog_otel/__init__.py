"""OpenTelemetry metrics and traces for chanlog (ADR 0035): a
:class:`~chanlog.telemetry.TelemetryProvider` that instruments a store when an OpenTelemetry
SDK is configured, and serves Prometheus text for ``chanlog run --metrics``."""

from __future__ import annotations

from chanlog_otel.provider import OtelProvider, sdk_configured

__all__ = ["OtelProvider", "sdk_configured"]
