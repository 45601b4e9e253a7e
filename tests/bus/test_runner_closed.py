"""A runner closed while it runs stops running: closed by its own handler in the middle of
a record, or by another thread. It never takes its lease back to hand records to the
handler it closed."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import chanlog
from bus.conftest import until
from chanlog.bus.runner import ConsumerRunner
from chanlog.errors import ChanlogError
from chanlog.records import RecordedEvent

SETTINGS: dict[str, Any] = {"backoff": [0.0], "lease_ttl": 5.0, "commit_every": 1}
BOUND = 20.0  # seconds: a bound for a thread, not a timing claim


class ClosesItsRunner:
    """A handler that closes its own runner when it is handed offset ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.offsets: list[int] = []
        self.runner: ConsumerRunner | None = None

    def __call__(self, record: RecordedEvent) -> None:
        self.offsets.append(record.offset)
        if record.offset == self.at and self.runner is not None:
            self.runner.close()


def _run(runner: ConsumerRunner) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def test_a_handler_that_closes_its_runner_ends_the_run(store: chanlog.EventStore) -> None:
    handler = ClosesItsRunner(at=5)
    runner = store.bus.consumer("c", handler, **SETTINGS)
    handler.runner = runner
    stop, thread = _run(runner)
    thread.join(BOUND)
    stop.set()  # only so that a run that did not end ends now
    thread.join(BOUND)
    assert handler.offsets == [0, 1, 2, 3, 4, 5]
    state = store.bus.consumers.state("c")
    # What was handled before the record in hand is committed; that record is handed over
    # again next time (at least once).
    assert state.position == 5
    assert state.lease_holder is None


def test_a_runner_closed_by_another_thread_hands_nothing_more_to_its_handler(
    store: chanlog.EventStore,
) -> None:
    offsets: list[int] = []
    runner = store.bus.consumer("c", lambda record: offsets.append(record.offset), **SETTINGS)
    stop, thread = _run(runner)
    until(lambda: runner.position == len(store))
    runner.close()
    thread.join(BOUND)
    alive = thread.is_alive()
    holder = store.bus.consumers.state("c").lease_holder
    stop.set()
    thread.join(BOUND)
    assert not alive, "the run went on after its runner was closed"
    assert holder is None, "the closed runner took its lease back"
    assert offsets == list(range(len(store)))


def test_a_closed_runner_is_not_started_again(store: chanlog.EventStore) -> None:
    runner = store.bus.consumer("c", lambda record: None, **SETTINGS)
    runner.drain()
    runner.close()
    with pytest.raises(ChanlogError, match="'c': this runner was closed"):
        runner.run_once()
    assert store.bus.consumers.state("c").lease_holder is None


def test_a_runner_closed_as_its_run_takes_the_lease_ends_the_run_quietly(
    store: chanlog.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = store.bus.consumer("c", lambda record: None, **SETTINGS)
    start = runner.start

    def closed_first(**options: Any) -> bool:
        runner.close()  # by another thread, just after the run found the runner open
        return start(**options)

    monkeypatch.setattr(runner, "start", closed_first)
    runner.run(threading.Event())  # returns, raising nothing
    assert not runner.started
