"""``chanlog run --metrics``: a real process serving Prometheus text, scraped over HTTP while
another process appends; and ``chanlog stats --json`` showing the same figures."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")
APPENDED = 37  # chanlog generate --channels 1 --turns 2
PARKED_OFFSET = 2

CONFIG = f"""\
[backend]
name = "sqlite"
path = "node.db"

[consumers.audit]
handler = "fail-on"
offsets = [{PARKED_OFFSET}]
pause_ms = 25
max_deliver = 2
backoff = [0.01]
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(directory: Path) -> dict[str, str]:
    """No CHANLOG_* variable of ours; the ``fail-on`` handler's plugin on PYTHONPATH (a
    dist-info naming :mod:`failing_plugin` as a ``chanlog`` entry point)."""
    info = directory / "site" / "chanlog_fail_on-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chanlog-fail-on\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[chanlog]\nfail_on = failing_plugin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHANLOG_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(info.parent), str(HERE)])
    return env


def _scrape(url: str) -> dict[str, float]:
    """``name{labels}`` → value of every sample (``# HELP``/``# TYPE`` lines skipped),
    with the ``otel_scope_*`` labels removed."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = re.sub(r'otel_scope_\w+="[^"]*",?', "", name).replace(",}", "}").replace("{}", "")
        samples[name] = float(value)
    return samples


def _chanlog(
    directory: Path, env: dict[str, str], *arguments: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``chanlog`` command in ``directory`` and collect what it printed."""
    assert CHANLOG is not None
    return subprocess.run(
        [CHANLOG, *arguments],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def node(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "chanlog.toml").write_text(CONFIG)
    return tmp_path, _environment(tmp_path)


def test_run_serves_prometheus_metrics_of_appends_from_another_process(
    node: tuple[Path, dict[str, str]],
) -> None:
    assert CHANLOG is not None, "the chanlog console script is not installed"
    directory, env = node
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    runner = subprocess.Popen(
        [CHANLOG, "run", "--metrics", f"127.0.0.1:{port}", "--refresh", "0.2"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def serving() -> bool:
            assert runner.poll() is None, runner.communicate()
            try:
                return "chanlog_consumer_lag" in str(_scrape(url))
            except OSError:
                return False

        _wait_for(serving, "the metrics endpoint")
        before = _scrape(url)
        assert before["chanlog_log_records_total"] == 0
        appended = _chanlog(
            directory,
            env,
            *("generate", "--channels", "1", "--turns", "2", "--batch-size", "5"),
            timeout=120,
        )
        assert appended.returncode == 0, appended.stderr

        consumer = '{messaging_consumer_group_name="audit"}'
        lags: list[float] = []

        def caught_up() -> bool:
            now = _scrape(url)
            lags.append(now[f"chanlog_consumer_lag{consumer}"])
            return lags[-1] == 0 and now.get(f"chanlog_consumer_parked{consumer}") == 1

        _wait_for(caught_up, "the consumer to catch up and park one record")
        # It was seen behind (25 ms per record), then back to 0.
        assert max(lags) > 0, lags
        after = _scrape(url)
        # The log grew by what the other process appended, read from the backend.
        assert after["chanlog_log_records_total"] == APPENDED
        assert after[f"chanlog_consumer_position{consumer}"] == APPENDED
        # This process's own counters: what its consumer did.
        assert after[f"chanlog_consumer_handled_total{consumer}"] == APPENDED - 1
        failures = '{error_type="RuntimeError",messaging_consumer_group_name="audit"}'
        assert after[f"chanlog_consumer_failures_total{failures}"] == 2
        assert after[f"messaging_process_duration_seconds_count{consumer}"] == APPENDED + 1
    finally:
        runner.send_signal(signal.SIGTERM)
        _out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, err

    stats = _chanlog(directory, env, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    metrics = json.loads(stats.stdout)["metrics"]
    assert metrics["records"] == APPENDED
    assert metrics["consumers"]["audit"] == {
        "position": APPENDED,
        "lag": 0,
        "handled": APPENDED - 1,
        "parked": 1,
    }
    assert metrics["snapshots"] == {"count": 0, "bytes": 0}


def test_run_refuses_a_bad_metrics_address(node: tuple[Path, dict[str, str]]) -> None:
    directory, env = node
    result = _chanlog(directory, env, "run", "--metrics", "nowhere")
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


def test_run_without_a_telemetry_plugin_names_chanlog_otel(
    node: tuple[Path, dict[str, str]],
) -> None:
    directory, env = node
    env["CHANLOG_DISABLE_PLUGINS"] = "otel"
    result = _chanlog(directory, env, "run", "--metrics", f"127.0.0.1:{_free_port()}")
    assert result.returncode == 2
    assert "chanlog-otel" in result.stderr
