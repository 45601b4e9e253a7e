"""``chanlog run --metrics`` and ``chanlog stats --json``'s ``metrics``, in-process (serving
metrics sets process-wide OpenTelemetry state, so the served endpoint is tested in a child
process by plugins/chanlog-otel/tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from chanlog.cli.commands import bus
from chanlog.errors import ConfigError
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from cli.conftest import Run


@pytest.mark.parametrize("address", ["nowhere", "127.0.0.1:", ":9464", "host:0", "host:70000"])
def test_a_bad_address_is_a_usage_error(run: Run, address: str) -> None:
    result = run("run", "--metrics", address)
    assert result.exit_code == 2
    assert "HOST:PORT" in result.output


def test_without_a_telemetry_plugin_it_names_chanlog_otel(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "default_host", lambda: PluginHost(load_entry_points=False))
    result = run("run", "--metrics", "127.0.0.1:9464")
    assert result.exit_code == 2
    assert "chanlog-otel" in result.output


class _Provider:
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.served: list[tuple[str, int]] = []
        self.stopped = 0

    def for_store(self, store: Any) -> None:
        return None

    def serve_metrics(self, host: str, port: int) -> Callable[[], None]:
        if self.refuse:
            raise ConfigError(f"--metrics {host}:{port}: cannot listen there")
        self.served.append((host, port))

        def stop() -> None:
            self.stopped += 1

        return stop


def _host_with(provider: _Provider) -> PluginHost:
    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Callable[[str, Any], None]) -> None:
            register("fake", provider)

    host = PluginHost(load_entry_points=False)
    host.register(Registers(), "fake")
    return host


def test_the_provider_serves_before_the_run_and_stops_after_it(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = _Provider(refuse=False)
    monkeypatch.setattr(bus, "default_host", lambda: _host_with(provider))
    # No consumer configured: the run itself fails, and serving stops all the same.
    result = run("run", "--metrics", "[::1]:9464")
    assert result.exit_code == 2, result.output
    assert "nothing to run" in result.output
    assert provider.served == [("::1", 9464)]
    assert provider.stopped == 1


def test_an_address_the_provider_cannot_serve_is_a_usage_error(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "default_host", lambda: _host_with(_Provider(refuse=True)))
    result = run("run", "--metrics", "127.0.0.1:9464")
    assert result.exit_code == 2
    assert "cannot listen there" in result.output


def test_stats_json_shows_the_metrics(run: Run, demo_db: Path) -> None:
    result = run("stats", "--json")
    assert result.exit_code == 0, result.output
    stats = orjson.loads(result.output)
    assert stats["metrics"] == {
        "records": stats["length"],
        "snapshots": {"count": 0, "bytes": 0},
        "consumers": {},
    }
    assert "events_by_type" in stats  # the existing keys stay
    plain = run("stats")
    assert plain.exit_code == 0
    assert "metrics" not in plain.output
