"""A handler that says why its records wait (ReportsFailure): the runner's lease heartbeat
records the reason as the consumer's last error, so that another process (``chanlog
consumers``) sees it, also while the runner's thread waits inside the handler (ADR 0048)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import chanlog
from bus.conftest import fill, until
from bus.processes import cli
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.failure_report import FailureRecorder
from chanlog.bus.lease import Lease
from chanlog.bus.progress import RunnerStats
from chanlog.records import PositionMove, RecordedEvent

LEASE = 0.3  # renewed, and the failure recorded, every 0.1 s


class Waiting:
    """A handler whose records wait for something outside the log: while ``away`` is set it
    blocks in ``handle`` (as a relay with a full window does) and says why."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.away = threading.Event()
        self.back = threading.Event()
        self.handled: list[int] = []

    def __call__(self, record: RecordedEvent) -> None:
        if self.away.is_set():
            self.back.wait(30)
        self.handled.append(record.offset)

    def failure(self) -> str | None:
        return self.reason


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _last_error(store: chanlog.EventStore, name: str = "relay") -> str | None:
    return store.bus.consumers.info(name).state.last_error


def _waiting_relay(
    store: chanlog.EventStore, stop: threading.Event, reason: str
) -> tuple[Waiting, threading.Thread]:
    """Consumer ``relay`` running on a thread (until ``stop``), its handler waiting in
    ``handle`` and saying ``reason``; returned once the runner holds the lease."""
    handler = Waiting()
    handler.away.set()
    handler.reason = reason
    runner = store.bus.consumer("relay", handler, lease_ttl=LEASE, backoff=[0.0])
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    until(lambda: runner.started)
    return handler, thread


def test_a_reason_given_while_the_runner_waits_in_the_handler_is_recorded(
    store: chanlog.EventStore, stop: threading.Event
) -> None:
    handler, thread = _waiting_relay(store, stop, "NATS away: connection refused")
    until(lambda: _last_error(store) == "NATS away: connection refused")
    info = store.bus.consumers.info("relay")
    assert (info.state.position, info.state.handled, info.lag) == (0, 0, len(store))
    assert handler.handled == []  # recorded while the runner's thread was still waiting

    handler.reason = None
    handler.away.clear()
    handler.back.set()
    until(lambda: store.bus.consumers.info("relay").lag == 0)
    until(lambda: _last_error(store) is None)  # the reason is gone: so is what it wrote
    stop.set()
    thread.join(10)
    assert handler.handled == list(range(len(store)))


def _recorder(store: chanlog.EventStore, handler: Waiting) -> tuple[FailureRecorder, RunnerStats]:
    """A recorder for consumer ``relay``, whose lease ``runner-1`` holds, at position 0."""
    store.backend.ensure_consumer("relay", 0, [">"])  # type: ignore[attr-defined]
    lease = Lease(store.backend, "relay", "runner-1", 15.0)  # type: ignore[arg-type]
    lease.take(wait=False, stop=None)
    stats = RunnerStats()
    return FailureRecorder(handler, lease, stats), stats


def test_a_reason_coming_back_is_recorded_again_over_a_records_error(
    store: chanlog.EventStore,
) -> None:
    handler = Waiting()
    record_failure, stats = _recorder(store, handler)

    handler.reason = "JetStream does not answer"
    record_failure()
    assert _last_error(store) == "JetStream does not answer"
    store.backend.move_consumer(  # type: ignore[attr-defined]
        PositionMove("relay", "runner-1", 3, handled=3, error="ValueError: a record's")
    )
    stats.position = 3
    record_failure()  # the same reason, already recorded: not again
    assert _last_error(store) == "ValueError: a record's"
    handler.reason = None
    record_failure()  # gone, but what it wrote was written over: left as it is
    assert _last_error(store) == "ValueError: a record's"
    handler.reason = "JetStream does not answer"
    record_failure()
    state = store.bus.consumers.info("relay").state
    assert (state.last_error, state.position, state.handled) == ("JetStream does not answer", 3, 3)


def test_a_reason_gone_is_cleared_from_the_consumer(store: chanlog.EventStore) -> None:
    handler = Waiting()
    record_failure, stats = _recorder(store, handler)
    handler.reason = "NATS away"
    record_failure()
    assert _last_error(store) == "NATS away"
    handler.reason = None
    # The runner's commit of 5 meanwhile: clearing at 0 is refused, and tried again.
    store.backend.move_consumer(PositionMove("relay", "runner-1", 5))  # type: ignore[attr-defined]
    record_failure()
    assert _last_error(store) == "NATS away"
    stats.position = 5
    record_failure()
    state = store.bus.consumers.info("relay").state
    assert (state.last_error, state.position) == (None, 5)


def test_a_position_committed_meanwhile_postpones_the_record_to_the_next_beat(
    store: chanlog.EventStore,
) -> None:
    handler = Waiting()
    record_failure, stats = _recorder(store, handler)
    # The runner's commit of 5, which its figures do not count yet.
    store.backend.move_consumer(PositionMove("relay", "runner-1", 5))  # type: ignore[attr-defined]
    handler.reason = "NATS away"
    record_failure()  # a move back to 0 is refused: nothing recorded, nothing raised
    assert _last_error(store) is None
    stats.position = 5
    record_failure()
    state = store.bus.consumers.info("relay").state
    assert (state.last_error, state.position) == ("NATS away", 5)


def test_a_handlers_reason_comes_before_the_record_it_makes_fail(
    store: chanlog.EventStore,
) -> None:
    # The relay's broker away makes the record in hand raise: the reason says why.
    handler = Waiting()
    record_failure, stats = _recorder(store, handler)
    stats.retry = "offset 0, try 1 of 5 failed, retrying: Interrupted: the window is full"
    handler.reason = "NATS away"
    record_failure()
    assert _last_error(store) == "NATS away"
    handler.reason = None
    record_failure()
    assert _last_error(store) == stats.retry
    stats.retry = None
    record_failure()
    assert _last_error(store) is None


def test_chanlog_consumers_in_another_process_says_why_a_relay_waits(
    tmp_path: Path, stop: threading.Event
) -> None:
    path = tmp_path / "node.db"
    store = chanlog.EventStore(SqliteBackend(path))
    fill(store, channels=2, turns=3)
    reason = "NATS away: nats://127.0.0.1:4222 refused the connection"
    handler, thread = _waiting_relay(store, stop, reason)
    try:
        until(lambda: _last_error(store) == handler.reason)
        listed = cli("--db", str(path), "consumers", "--json", cwd=tmp_path, env=os.environ)
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert (row["last_error"], row["position"], row["lag"], row["running"]) == (
            handler.reason,
            0,
            len(store),
            True,
        )
        table = cli("--db", str(path), "consumers", cwd=tmp_path, env=os.environ)
        assert "NATS away" in table.stdout, table.stdout + table.stderr
    finally:
        handler.back.set()
        stop.set()
        thread.join(10)
        store.close()


def test_an_empty_reason_is_no_failure_and_clears_nothing(store: chanlog.EventStore) -> None:
    # A handler that builds its reason as text ("" when all is well) says "no failure", not
    # "clear the last error": a record's error recorded by the runner must stay.
    handler = Waiting()
    record_failure, stats = _recorder(store, handler)
    store.backend.move_consumer(  # type: ignore[attr-defined]
        PositionMove("relay", "runner-1", 3, handled=3, error="ValueError: a record's")
    )
    stats.position = 3
    handler.reason = ""
    record_failure()
    assert _last_error(store) == "ValueError: a record's"
    handler.reason = "NATS away"
    record_failure()
    assert _last_error(store) == "NATS away"
    handler.reason = ""  # gone, as None would say: what it wrote is cleared
    record_failure()
    assert _last_error(store) is None
