"""Issue 15 through ``chanlog`` processes on SQLite: parking and replay, two workers on one
consumer, a 100k-event log with three consumers, and bad input (the PostgreSQL plugin's
tests run the same scenarios)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bus.processes import (
    Worker,
    cli,
    environment,
    open_store,
    plugin_site,
    states,
    wait_for,
    workers,
    write_config,
)
from bus.scenarios import (
    lease_takeover,
    park_then_replay,
    three_consumers_over_a_big_log,
    workload,
)
from chanlog.cli.errors import ExitCode


def sqlite(tmp_path: Path) -> dict[str, object]:
    return {"name": "sqlite", "path": str(tmp_path / "log.db"), "durability": "full"}


def test_a_failing_record_is_parked_shown_and_replayed(tmp_path: Path) -> None:
    park_then_replay(sqlite(tmp_path), tmp_path)


def test_a_worker_whose_threads_all_died_exits_with_their_errors(tmp_path: Path) -> None:
    """Not 0: a worker nobody asked to stop, whose consumers all failed, has failed."""
    probe = {"handler": "probe", "path": str(tmp_path / "probe.txt"), "fail_to_start": True}
    write_config(tmp_path, sqlite(tmp_path), {"fragile": probe})
    done = cli("run", cwd=tmp_path, env=environment(plugin_site(tmp_path)), timeout=60)
    assert done.returncode == ExitCode.STORAGE, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "chanlog: consumer fragile: RuntimeError: probe fragile refuses to start"
    )


LEASE_TTL = 1.5


def test_a_second_worker_waits_then_takes_over_within_the_lease(tmp_path: Path) -> None:
    takeover = lease_takeover(sqlite(tmp_path), tmp_path, LEASE_TTL)
    # Within the lease's expiry, plus the waiting worker's polling and a loaded machine.
    assert takeover.seconds < LEASE_TTL + 2.0, takeover
    print(takeover)


@pytest.mark.slow
def test_chanlog_run_with_three_consumers_over_100k_events_then_live(tmp_path: Path) -> None:
    three_consumers_over_a_big_log(sqlite(tmp_path), tmp_path, 100_000)


def test_sighup_stops_chanlog_run_cleanly(tmp_path: Path) -> None:
    """The terminal ``chanlog run`` ran in closing (SIGHUP) stops it as SIGTERM does: each
    consumer stores its position and gives its lease up, and it exits 0 (before, the
    process ended on the spot, its lease held until it expired)."""
    backend = sqlite(tmp_path)
    probe = {"handler": "probe", "path": str(tmp_path / "probe.txt"), "lease_ttl": 600}
    write_config(tmp_path, backend, {"audit": probe})
    with open_store(backend) as store, workers() as started:
        store.append_batch(workload(1, channels=2, turns=2))
        head = len(store)
        worker = Worker(tmp_path, environment(plugin_site(tmp_path)))
        started.append(worker)
        wait_for(
            lambda: getattr(states(store).get("audit"), "position", 0) == head, 60, worker.output
        )
        worker.process.send_signal(signal.SIGHUP)
        assert worker.process.wait(timeout=60) == 0, worker.output()
        assert states(store)["audit"].lease_holder is None
