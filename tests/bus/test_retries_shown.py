"""A record being retried is a failure that stands (ADR 0058): while the runner waits out
its backoff, the lease heartbeat writes ``offset N, try K of M failed, retrying: <error>``
as the consumer's last error, so ``chanlog consumers`` in any process says why the lag
grows; it ends once the record is handled, and gives way to the record's own error once it
is parked. ``chanlog run``'s row shows it at once."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import chanlog
from bus.conftest import Recorder, until
from bus.processes import cli
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.failure_report import FailureRecorder
from chanlog.bus.lease import Lease
from chanlog.bus.progress import RunnerStats
from chanlog.bus.settings import BusSettings, ConsumerSettings
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.worker import Worker
from chanlog.records import ParkedRecord, PositionMove
from chanlog.testing import sample_events

LEASE = 0.3  # renewed, and the standing failure written, every 0.1 s


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _store(backend: Any = None) -> chanlog.EventStore:
    store = chanlog.EventStore(backend or MemoryBackend(), projections=[])
    store.append_batch(sample_events(8))
    return store


def _last_error(store: chanlog.EventStore) -> str:
    return store.bus.consumers.info("c").state.last_error or ""


def _running(
    store: chanlog.EventStore, handler: Recorder, stop: threading.Event, **settings: Any
) -> threading.Thread:
    runner = store.bus.consumer("c", handler, lease_ttl=LEASE, **settings)
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    until(lambda: runner.started)
    return thread


def test_a_record_being_retried_is_the_last_error_until_it_is_parked(
    stop: threading.Event,
) -> None:
    store = _store()
    thread = _running(store, Recorder(fail_on={3}), stop, max_deliver=3, backoff=[0.6])
    until(lambda: _last_error(store).startswith("offset 3, try 1 of 3 failed, retrying: "))
    assert "RuntimeError: cannot handle 3 (at " in _last_error(store)
    info = store.bus.consumers.info("c")
    assert (info.state.position, info.state.parked, info.lag) == (3, 0, 5)
    until(lambda: _last_error(store).startswith("offset 3, try 2 of 3 failed, retrying: "))
    until(lambda: store.bus.consumers.info("c").state.parked == 1)
    [parked] = store.bus.consumers.parked("c")
    # Parked, the record's own error stands, and no later beat writes the retry back.
    until(lambda: _last_error(store) == parked.error)
    assert parked.error.startswith("offset 3: RuntimeError")
    stop.wait(LEASE)
    assert _last_error(store) == parked.error
    stop.set()
    thread.join(10)


def test_a_record_handled_on_a_retry_leaves_no_error_once_it_is(stop: threading.Event) -> None:
    store = _store()
    handler = Recorder(fail_on={3}, fail_times=2)
    thread = _running(store, handler, stop, max_deliver=5, backoff=[0.6])
    until(lambda: _last_error(store).startswith("offset 3, try 1 of 5 failed, retrying: "))
    until(lambda: store.bus.consumers.info("c").lag == 0)
    until(lambda: store.bus.consumers.info("c").state.last_error is None)
    assert store.bus.consumers.info("c").state.parked == 0 and 3 in handler.offsets
    stop.set()
    thread.join(10)


def test_a_retry_left_by_a_stopped_runner_ends_once_the_next_one_handles_its_record(
    stop: threading.Event,
) -> None:
    store = _store()
    thread = _running(store, Recorder(fail_on={3}), stop, backoff=[30.0])
    until(lambda: _last_error(store).startswith("offset 3, try 1 of "))
    stop.set()  # during the backoff: the record stays unhandled
    thread.join(10)
    left = store.bus.consumers.info("c")
    assert (left.running, left.state.position) == (False, 3)
    assert left.state.last_error is not None and "try 1 of" in left.state.last_error

    again = threading.Event()
    try:
        thread = _running(store, Recorder(), again)
        until(lambda: store.bus.consumers.info("c").lag == 0)
        until(lambda: store.bus.consumers.info("c").state.last_error is None)
    finally:
        again.set()
        thread.join(10)


def test_chanlog_consumers_in_another_process_says_which_record_is_retried(
    tmp_path: Path, stop: threading.Event
) -> None:
    path = tmp_path / "node.db"
    store = _store(SqliteBackend(path))
    thread = _running(store, Recorder(fail_on={2}), stop, max_deliver=4, backoff=[30.0])
    try:
        until(lambda: _last_error(store).startswith("offset 2, try 1 of 4 failed"))
        listed = cli("--db", str(path), "consumers", "--json", cwd=tmp_path, env=os.environ)
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["last_error"].startswith(
            "offset 2, try 1 of 4 failed, retrying: RuntimeError: cannot handle 2"
        ), row
        assert (row["position"], row["parked"], row["lag"], row["running"]) == (2, 0, 6, True)
        wide = {**os.environ, "COLUMNS": "400"}  # one line per row: the cell is not folded
        table = cli("--db", str(path), "consumers", cwd=tmp_path, env=wide)
        assert "offset 2, try 1 of 4 failed, retrying" in table.stdout, table.stdout
    finally:
        stop.set()
        thread.join(10)
        store.close()


def test_chanlog_runs_row_shows_the_retry_before_the_heartbeat_writes_it() -> None:
    store = _store()
    handler = Recorder(fail_on={1})
    spec = ConsumerSpec("c", backoff=[30.0], lease_ttl=60.0)  # no beat during the test
    settings = BusSettings(consumers=(ConsumerSettings(spec, "failing"),))
    worker = Worker(store, store.bus, settings, {"failing": lambda: handler}, {})
    worker.start()
    try:
        until(lambda: handler.failed.get(1) == 1)
        until(lambda: (worker.rows()[0].last_error or "").startswith("offset 1, try 1 of 5"))
        assert store.bus.consumers.info("c").state.last_error is None  # not written yet
    finally:
        worker.stop()
        worker.close()


class _ParksWhileWritten:
    """A memory backend whose first move carrying ``error`` first commits the runner's
    park of the record that error is about: the retry ends, and its record's error is
    written, between the heartbeat's look at the retry and its write of it."""

    def __init__(self, backend: MemoryBackend, stats: RunnerStats, error: str) -> None:
        self._backend = backend
        self._stats = stats
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def move_consumer(self, move: PositionMove) -> None:
        if move.error == self._error:
            self._error = ""
            self._stats.retry = None  # as the runner does before it commits the park
            parked = ParkedRecord("c", 3, "e3", "t", 5, "offset 3: RuntimeError: x", 0.0)
            self._backend.move_consumer(
                PositionMove("c", "runner-1", 4, handled=3, parked=(parked,), error=parked.error)
            )
            self._stats.position = 4
        self._backend.move_consumer(move)


def test_a_retry_written_after_its_record_was_parked_gives_way_to_the_records_error() -> None:
    backend = MemoryBackend()
    backend.ensure_consumer("c", 0, [">"])
    stats = RunnerStats(position=4)
    retry = "offset 3, try 4 of 5 failed, retrying: RuntimeError: x"
    keeper = _ParksWhileWritten(backend, stats, retry)
    lease = Lease(keeper, "c", "runner-1", 15.0)
    lease.take(wait=False, stop=None)
    backend.move_consumer(PositionMove("c", "runner-1", 4, handled=3))
    stats.retry = retry

    FailureRecorder(lambda record: None, lease, stats)()
    state = backend.consumer_state("c")
    assert state is not None
    assert (state.last_error, state.parked) == ("offset 3: RuntimeError: x", 1)
