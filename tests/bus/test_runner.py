"""Durable consumers on the memory backend: order, retries, parking, commits, leases."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chanlog
from bus.conftest import Recorder, fill, until
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.runner import ConsumerRunner
from chanlog.bus.subjects import subject_of
from chanlog.errors import DecodeError, InvalidArgument, LeaseHeld, NotFound, StorageError
from chanlog.events import ObjectiveApproved, ObjectiveCreated
from chanlog.records import RecordedEvent
from chanlog.testing import FlakyBackend
from chanlog.testing.flaky import WriteStage
from tips_plugin import TipPaid, host_with_tips

FAST: dict[str, Any] = {"backoff": [0.0], "lease_ttl": 5.0}


def matching(store: chanlog.EventStore, *patterns: str) -> list[int]:
    subject_filter = store.bus.subject_filter(list(patterns))
    return [record.offset for record in store if subject_filter.matches(record)]


Running = Callable[[ConsumerRunner], tuple[threading.Event, threading.Thread]]
"""Starts ``runner.run(stop)`` in a thread; returns the stop event and the thread."""


@pytest.fixture
def running() -> Iterator[Running]:
    """Runs consumers in threads that are stopped and joined when the test ends, passed or
    failed: a failed assertion must fail the test, not leave a runner that keeps pytest
    from exiting."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(runner: ConsumerRunner) -> tuple[threading.Event, threading.Thread]:
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return stop, thread

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(10)


def test_every_matching_record_once_in_order(store: chanlog.EventStore) -> None:
    recorder = Recorder()
    runner = store.bus.consumer("c", recorder, subjects=["chanlog.channel.>"], **FAST)
    assert runner.drain() == len(store)
    runner.close()
    assert recorder.offsets == matching(store, "chanlog.channel.>")
    info = store.bus.consumers.info("c")
    assert info.state.position == len(store)
    assert info.state.handled == len(recorder.offsets)
    assert info.lag == 0
    assert not info.running


def test_a_restarted_consumer_resumes_where_it_committed(store: chanlog.EventStore) -> None:
    first = Recorder()
    runner = store.bus.consumer("c", first, commit_every=1000, commit_interval=3600, **FAST)
    runner.run_once(limit=10)
    runner.flush()
    runner.close()
    assert first.offsets == list(range(10))
    second = Recorder()
    with store.bus.consumer("c", second, **FAST) as again:
        again.drain()
    assert second.offsets == list(range(10, len(store)))


def test_uncommitted_records_are_handed_again_after_a_crash(store: chanlog.EventStore) -> None:
    first = Recorder()
    runner = store.bus.consumer("c", first, commit_every=5, commit_interval=3600, **FAST)
    runner.run_once(limit=12)  # committed at 5 and 10; 10 and 11 handled, not committed
    assert store.bus.consumers.state("c").position == 10
    # A crash: the lease is simply not given up; a new runner waits for it to expire.
    store.backend.release_lease("c", runner.holder)  # type: ignore[attr-defined]
    second = Recorder()
    with store.bus.consumer("c", second, **FAST) as again:
        again.drain()
    assert second.offsets[:2] == [10, 11]  # at least once
    assert sorted(set(first.offsets + second.offsets)) == list(range(len(store)))


def test_commit_every_n_records_or_after_an_interval(store: chanlog.EventStore) -> None:
    runner = store.bus.consumer("c", Recorder(), commit_every=7, commit_interval=3600, **FAST)
    runner.run_once(limit=20)
    assert store.bus.consumers.state("c").position == 14
    runner.close()
    assert store.bus.consumers.state("c").position == 20
    timed = store.bus.consumer("t", Recorder(), commit_every=10**6, commit_interval=0.01, **FAST)
    timed.start()
    timed.run_once(limit=3)
    time.sleep(0.02)
    timed.run_once(limit=1)
    assert store.bus.consumers.state("t").position == 4
    timed.close()


def test_a_failing_record_is_retried_then_parked_and_the_rest_goes_on(
    store: chanlog.EventStore,
) -> None:
    recorder = Recorder(fail_on={4})
    runner = store.bus.consumer("c", recorder, max_deliver=3, **FAST)
    runner.drain()
    runner.close()
    assert recorder.failed == {4: 3}
    assert recorder.offsets == [o for o in range(len(store)) if o != 4]
    [parked] = store.bus.consumers.parked("c")
    assert (parked.offset, parked.attempts, parked.replay) == (4, 3, False)
    assert "RuntimeError: cannot handle 4" in parked.error
    assert parked.event_id == next(store.read_range(4, 5)).event_id
    state = store.bus.consumers.state("c")
    assert state.parked == 1 and "cannot handle 4" in (state.last_error or "")
    assert state.position == len(store)


def test_a_handlers_error_with_a_nul_is_logged_as_it_is_stored(
    store: chanlog.EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(record: RecordedEvent) -> None:
        if record.offset == 1:
            raise ValueError("bad note 'a\x00b'")

    with (
        caplog.at_level(logging.WARNING, logger="chanlog.bus"),
        store.bus.consumer("c", handler, max_deliver=1, **FAST) as runner,
    ):
        runner.drain()
    [parked] = store.bus.consumers.parked("c")
    assert "bad note 'a\\x00b'" in parked.error
    lines = [r.getMessage() for r in caplog.records if r.name == "chanlog.bus"]
    described = parked.error.removeprefix("offset 1: ")
    assert len(lines) == 2 and all(described in line for line in lines)


def test_a_retry_that_succeeds_is_not_parked(store: chanlog.EventStore) -> None:
    recorder = Recorder(fail_on={2}, fail_times=2)
    with store.bus.consumer("c", recorder, max_deliver=3, **FAST) as runner:
        runner.drain()
    assert recorder.offsets == list(range(len(store)))
    assert store.bus.consumers.parked("c") == []


def test_backoff_waits_between_tries(store: chanlog.EventStore) -> None:
    recorder = Recorder(fail_on={0}, fail_times=2)
    with store.bus.consumer("c", recorder, max_deliver=3, backoff=[0.05, 0.1]) as runner:
        started = time.monotonic()
        runner.run_once(limit=1)
        assert time.monotonic() - started >= 0.15
    assert recorder.offsets == [0]


def test_a_stop_during_a_backoff_leaves_the_record_unhandled(
    store: chanlog.EventStore, running: Running
) -> None:
    # The record in hand is left (neither handled nor parked, its position not passed)
    # and the runner stops at once instead of waiting out its backoff.
    recorder = Recorder(fail_on={4}, fail_times=1)
    runner = store.bus.consumer("c", recorder, max_deliver=3, backoff=[30.0], lease_ttl=5.0)
    started = time.monotonic()
    stop, worker = running(runner)
    while not recorder.failed:
        time.sleep(0.01)
    stop.set()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - started < 10
    assert recorder.offsets == [0, 1, 2, 3]
    state = store.bus.consumers.state("c")
    assert (state.position, state.handled, state.parked) == (4, 4, 0)
    # The next runner hands it over again (it succeeds now) and goes on.
    with store.bus.consumer("c", recorder, **FAST) as again:
        again.drain()
    assert recorder.offsets == list(range(len(store)))


def test_replay_hands_parked_records_again_and_drop_forgets_them(
    store: chanlog.EventStore,
) -> None:
    recorder = Recorder(fail_on={3, 5}, fail_times=1)
    runner = store.bus.consumer("c", recorder, max_deliver=1, **FAST)
    runner.drain()
    assert [p.offset for p in store.bus.consumers.parked("c")] == [3, 5]
    assert store.bus.consumers.replay("c", [3, 99]) == 1
    assert [p.replay for p in store.bus.consumers.parked("c")] == [True, False]
    runner.run_once()
    assert recorder.offsets[-1] == 3
    assert [p.offset for p in store.bus.consumers.parked("c")] == [5]
    assert store.bus.consumers.state("c").handled == len(store) - 1
    assert store.bus.consumers.drop("c") == 1
    assert store.bus.consumers.parked("c") == []
    runner.close()


def test_a_replay_that_fails_again_stays_parked_with_more_attempts(
    store: chanlog.EventStore,
) -> None:
    recorder = Recorder(fail_on={1})
    with store.bus.consumer("c", recorder, max_deliver=2, **FAST) as runner:
        runner.drain()
        store.bus.consumers.replay("c")
        runner.run_once()
    [parked] = store.bus.consumers.parked("c")
    assert (parked.offset, parked.attempts, parked.replay) == (1, 4, False)


def test_a_handler_that_appends_commits_its_events_with_the_position() -> None:
    objective = "0x" + "ab" * 32
    with chanlog.EventStore() as store:
        store.append(
            ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
        )

        def approve(record: RecordedEvent) -> list[chanlog.Event] | None:
            if isinstance(record.event, ObjectiveCreated):
                return [ObjectiveApproved(objective_id=record.event.objective_id, timestamp_ms=2)]
            return None

        with store.bus.consumer("approver", approve, commit_every=1000, **FAST) as runner:
            runner.run_once(limit=1)
            # Committed at once, with the position, though commit_every is large.
            assert store.bus.consumers.state("approver").position == 1
            assert [r.event_type for r in store] == ["objective-created", "objective-approved"]
            runner.drain()
        assert store.bus.consumers.state("approver").handled == 2


def test_appends_the_store_refuses_count_as_a_failed_try() -> None:
    objective = "0x" + "cd" * 32
    with chanlog.EventStore() as store:
        store.append(
            ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
        )

        def approve_twice(record: RecordedEvent) -> list[chanlog.Event]:
            approve = ObjectiveApproved(objective_id=objective, timestamp_ms=record.offset + 5)
            return [approve, ObjectiveApproved(objective_id=objective, timestamp_ms=99)]

        with store.bus.consumer("c", approve_twice, max_deliver=2, **FAST) as runner:
            runner.run_once(limit=1)
        [parked] = store.bus.consumers.parked("c")
        assert "InvalidTransition" in parked.error
        assert len(store) == 1  # nothing half-written


@pytest.mark.parametrize("returned", [5, "text", ObjectiveApproved(objective_id="0x" + "11" * 32)])
def test_a_handler_returning_something_else_fails_clearly(
    store: chanlog.EventStore, returned: object
) -> None:
    with store.bus.consumer("c", lambda _r: returned, max_deliver=1, **FAST) as runner:
        runner.run_once(limit=1)
    [parked] = store.bus.consumers.parked("c")
    assert "a handler returns None or a list of the events to append" in parked.error


def test_a_list_with_a_stranger_fails_clearly(store: chanlog.EventStore) -> None:
    with store.bus.consumer("c", lambda _r: [object()], max_deliver=1, **FAST) as runner:
        runner.run_once(limit=1)
    assert "each must be a chanlog Event" in store.bus.consumers.parked("c")[0].error


def test_coroutine_handlers_are_awaited(store: chanlog.EventStore) -> None:
    seen: list[int] = []

    async def handle(record: RecordedEvent) -> None:
        await asyncio.sleep(0)
        seen.append(record.offset)

    with store.bus.consumer("c", handle, **FAST) as runner:
        runner.drain()
    assert seen == list(range(len(store)))


def test_a_second_runner_waits_or_is_refused_clearly(store: chanlog.EventStore) -> None:
    first = store.bus.consumer("c", Recorder(), **FAST)
    first.start()
    second = store.bus.consumer("c", Recorder(), **FAST)
    with pytest.raises(LeaseHeld, match="is run by") as caught:
        second.start(wait=False)
    assert caught.value.holder == first.holder
    # When it is free again, as an operator reads it: not a count of seconds since 1970.
    assert re.search(
        r": its lease runs \d+\.\d s more, until 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z by the "
        r"backend's clock; stop that runner",
        str(caught.value),
    ), str(caught.value)
    stop = threading.Event()
    stop.set()
    assert second.start(stop=stop) is False  # gave up waiting
    first.close()
    assert second.start(wait=False) is True
    second.close()


def test_a_dead_runners_lease_expires_and_another_takes_over(store: chanlog.EventStore) -> None:
    dead = store.bus.consumer("c", Recorder(), lease_ttl=0.3, backoff=[0.0])
    dead.start()
    dead._lease._stop.set()  # a runner frozen without renewing its lease
    taker = store.bus.consumer("c", Recorder(), lease_ttl=0.3, backoff=[0.0])
    started = time.monotonic()
    assert taker.start(wait=True)
    assert time.monotonic() - started < 3
    taker.close()
    # The dead runner can no longer move the position.
    with pytest.raises(LeaseHeld):
        dead.run_once()


def test_start_latest_an_offset_and_beyond_the_log(store: chanlog.EventStore) -> None:
    length = len(store)
    with store.bus.consumer("late", Recorder(), start="latest", **FAST) as runner:
        assert runner.drain() == 0
    assert store.bus.consumers.state("late").position == length
    recorder = Recorder()
    with store.bus.consumer("mid", recorder, start=7, **FAST) as runner:
        runner.drain()
    assert recorder.offsets[0] == 7
    with pytest.raises(InvalidArgument, match="beyond the end of the log"):
        store.bus.consumer("far", Recorder(), start=length + 1, **FAST).start()
    with pytest.raises(NotFound):
        store.bus.consumers.state("far")  # nothing was written


def test_reset_lag_and_delete(store: chanlog.EventStore) -> None:
    with store.bus.consumer("c", Recorder(), subjects="chanlog.channel.>", **FAST) as runner:
        runner.drain()
    admin = store.bus.consumers
    assert admin.info("c").lag == 0
    admin.reset("c", "earliest")
    assert admin.info("c").lag == len(matching(store, "chanlog.channel.>"))
    admin.reset("c", 5)
    assert admin.state("c").position == 5
    admin.reset("c", "latest")
    assert admin.info("c").lag == 0
    with pytest.raises(InvalidArgument, match="beyond the end"):
        admin.reset("c", len(store) + 1)
    with pytest.raises(InvalidArgument):
        admin.reset("c", "never")
    with pytest.raises(NotFound, match="no consumer named 'x'"):
        admin.reset("x", 0)
    admin.delete("c")
    assert admin.states() == []


def test_reset_and_delete_are_refused_while_a_runner_holds_the_consumer(
    store: chanlog.EventStore,
) -> None:
    with store.bus.consumer("c", Recorder(), **FAST):
        with pytest.raises(LeaseHeld):
            store.bus.consumers.reset("c", 0)
        with pytest.raises(LeaseHeld):
            store.bus.consumers.delete("c")


def test_run_follows_live_appends_and_stops_cleanly(running: Running) -> None:
    with chanlog.EventStore() as store:
        recorder = Recorder()
        runner = store.bus.consumer("c", recorder, **FAST)
        stop, thread = running(runner)
        fill(store, seed=5)
        deadline = time.monotonic() + 10
        while len(recorder.offsets) < len(store) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert recorder.offsets == list(range(len(store)))
        state = store.bus.consumers.state("c")
        assert state.position == len(store) and state.lease_holder is None


def test_a_handler_tracking_its_own_position_is_resumed_from_it(store: chanlog.EventStore) -> None:
    class Tracking(Recorder):
        def position(self, consumer: str) -> int | None:
            assert consumer == "c"
            return 9

    handler = Tracking()
    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()
    assert handler.offsets[0] == 9


def test_a_handler_settling_later_holds_the_position_back(store: chanlog.EventStore) -> None:
    class Pipelined(Recorder):
        durable = 3

        def settled(self) -> int | None:
            return self.durable

        def settle(self, timeout: float) -> bool:
            self.durable = max(self.offsets) + 1
            return True

    handler = Pipelined()
    runner = store.bus.consumer("c", handler, **FAST)
    runner.run_once()
    assert store.bus.consumers.state("c").position == 3
    runner.close()
    assert store.bus.consumers.state("c").position == len(store)


def test_bound_and_closed_handlers(store: chanlog.EventStore) -> None:
    events: list[str] = []

    class Lifecycle(Recorder):
        def bind(self, bound: object, consumer: str) -> None:
            assert bound is store
            events.append(f"bind {consumer}")

        def close(self) -> None:
            events.append("close")

    with store.bus.consumer("c", Lifecycle(), **FAST) as runner:
        runner.run_once(limit=1)
    assert events == ["bind c", "close"]


def test_closing_a_runner_twice_closes_its_handler_once(store: chanlog.EventStore) -> None:
    # chanlog run closes each runner when its thread ends and again when the worker
    # closes: a handler whose close is not idempotent (a file descriptor) must not fail.
    closes: list[str] = []

    class ClosesOnce(Recorder):
        def close(self) -> None:
            if closes:
                raise OSError(9, "Bad file descriptor")
            closes.append("close")

    runner = store.bus.consumer("c", ClosesOnce(), **FAST)
    runner.drain()
    runner.close()
    runner.close()
    assert closes == ["close"]


def test_a_backend_without_consumers_is_refused() -> None:
    assert chanlog.EventStore().bus.consumers.states() == []

    class NoConsumers:
        """A backend that delegates everything but consumers."""

        def __init__(self) -> None:
            self._inner = MemoryBackend()
            self.name = "bare"
            self.shared = False

        def __getattr__(self, name: str) -> object:
            if name in {"consumer_state", "ensure_consumer", "consumer_states"}:
                raise AttributeError(name)
            return getattr(self._inner, name)

    bare = chanlog.EventStore(NoConsumers())  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="keeps no consumer positions"):
        bare.bus.consumer("c", Recorder())
    assert bare.bus.consumers.states() == []
    with pytest.raises(NotFound):
        bare.bus.consumers.state("c")


def test_consumer_specs_refuse_bad_settings(store: chanlog.EventStore) -> None:
    # wrong types among them on purpose: the refusals are under test
    bad_settings: list[dict[str, Any]] = [
        {"max_deliver": 0},
        {"backoff": []},
        {"backoff": [-1]},
        {"backoff": "1"},
        {"commit_every": 0},
        {"commit_interval": 0},
        {"lease_ttl": -1},
        {"subjects": "a..b"},
        {"start": -1},
    ]
    for settings in bad_settings:
        with pytest.raises(InvalidArgument):
            store.bus.consumer("c", Recorder(), **settings)
    for name in ("", "a b", "x" * 201, 5):
        with pytest.raises(InvalidArgument, match="consumer name"):
            store.bus.consumer(name, Recorder())  # type: ignore[arg-type]
    assert subject_of(next(iter(store))).startswith("chanlog.")


def test_a_handler_is_bound_before_it_is_asked_its_position(store: chanlog.EventStore) -> None:
    calls: list[str] = []

    class Ordered(Recorder):
        def bind(self, bound: object, consumer: str) -> None:
            calls.append("bind")

        def position(self, consumer: str) -> int | None:
            calls.append("position")
            return None

    with store.bus.consumer("c", Ordered(), **FAST):
        pass
    assert calls == ["bind", "position"]


def test_a_worker_interrupts_again_a_handler_that_blocked_after_the_first_interrupt(
    store: chanlog.EventStore,
) -> None:
    # The interrupt lands while the handler is between the runner's stop check and its
    # wait, which forgets interrupts that came before it (as a relay's offer does): waiting
    # for the worker interrupts it again.
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker

    class Late:
        def __init__(self) -> None:
            self.entered = threading.Event()
            self.blocking = threading.Event()
            self._woken = threading.Event()

        def __call__(self, record: RecordedEvent) -> None:
            self.entered.set()
            time.sleep(0.3)  # not waiting yet: an interrupt now finds nothing to stop
            self._woken.clear()
            self.blocking.set()
            if not self._woken.wait(30):
                raise TimeoutError("never interrupted")
            raise RuntimeError("interrupted: not handled")

        def interrupt(self) -> None:
            self._woken.set()

    late = Late()
    settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c", backoff=[5.0]), "late"),))
    worker = Worker(store, store.bus, settings, {"late": lambda: late}, {})
    worker.start()
    assert late.entered.wait(10)
    worker.stop()  # lost: the handler clears it when it starts waiting
    assert late.blocking.wait(10)
    started = time.monotonic()
    while not worker.wait(0.2):
        assert time.monotonic() - started < 10, "the handler was never interrupted again"
    assert store.bus.consumers.state("c").position == 0
    worker.close()


def test_a_worker_stopping_interrupts_a_handler_blocked_outside(
    store: chanlog.EventStore,
) -> None:
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker

    class Stuck:
        def __init__(self) -> None:
            self.released = threading.Event()
            self.entered = threading.Event()

        def __call__(self, record: RecordedEvent) -> None:
            self.entered.set()
            if not self.released.wait(30):
                raise TimeoutError("never interrupted")
            raise RuntimeError("interrupted: not handled")

        def interrupt(self) -> None:
            self.released.set()

    stuck = Stuck()
    settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c", backoff=[5.0]), "stuck"),))
    worker = Worker(store, store.bus, settings, {"stuck": lambda: stuck}, {})
    worker.start()
    assert stuck.entered.wait(10)
    started = time.monotonic()
    worker.stop()
    assert worker.wait(10)
    assert time.monotonic() - started < 5  # did not wait out the backoff or the handler
    assert store.bus.consumers.state("c").position == 0  # the record in hand is not taken
    worker.close()


def test_a_worker_shows_why_a_handler_that_reports_its_failure_is_behind(
    store: chanlog.EventStore,
) -> None:
    from chanlog.bus import ReportsFailure
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker

    class Waiting:
        """Takes every record and keeps it waiting on something away, raising nothing."""

        def __init__(self) -> None:
            self.away: str | None = "the broker is away"

        def __call__(self, record: RecordedEvent) -> None:
            return None

        def failure(self) -> str | None:
            return self.away

    waiting = Waiting()
    assert isinstance(waiting, ReportsFailure)
    settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c"), "waiting"),))
    worker = Worker(store, store.bus, settings, {"waiting": lambda: waiting}, {})
    worker.start()
    try:
        until(lambda: worker.runners["c"].started)
        assert worker.runners["c"].handler is waiting
        [row] = worker.rows()
        assert (row.state, row.last_error) == ("running", "the broker is away")
        waiting.away = None
        [row] = worker.rows()
        assert row.last_error is None
    finally:
        worker.stop()
        worker.close()


def test_a_storage_failure_is_retried_and_the_run_goes_on(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage is said once (it was said at every retry: 720 lines an hour at the
    longest backoff), and its end once."""
    backend = FlakyBackend()
    with (
        caplog.at_level(logging.WARNING, logger="chanlog.bus"),
        chanlog.EventStore(backend) as store,
    ):
        recorder = Recorder()
        runner = store.bus.consumer("c", recorder, **FAST)
        stop, thread = running(runner)
        backend.fail_reads(3)
        fill(store, seed=8)
        until(lambda: len(recorder.offsets) == len(store))
        until(lambda: any("works again" in r.getMessage() for r in caplog.records))
        lines = [r.getMessage() for r in caplog.records if r.name == "chanlog.bus"]
        assert len(lines) == 2
        assert lines[0] == (
            f"consumer c: its storage failed (StorageError: {backend.message}); retrying"
        )
        assert lines[1].startswith("consumer c: its storage works again, after 3 failed tries")
        assert thread.is_alive() and backend.reads_to_fail == 0
        assert backend.failed_reads == 3
        assert runner.stats.last_error == f"StorageError: {backend.message}"
        stop.set()
        thread.join(10)
        assert recorder.offsets == list(range(len(store)))
        assert store.bus.consumers.state("c").position == len(store)


def test_the_worker_shows_a_consumer_retrying_while_its_storage_fails() -> None:
    """``chanlog run``'s table says "retrying" while the storage fails and the consumer
    waits out its backoff, and "running" again once a try goes through."""
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker

    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        recorder = Recorder()
        settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c", **FAST), "rec"),))
        worker = Worker(store, store.bus, settings, {"rec": lambda: recorder}, {})
        worker.start()
        try:
            until(lambda: worker.rows()[0].state == "running")
            assert not worker.runners["c"].stats.retrying
            backend.fail_reads(4)  # 0.1 + 0.2 + 0.4 + 0.8 s of backoff
            fill(store, seed=11)
            until(lambda: worker.rows()[0].state == "retrying")
            row = worker.rows()[0]
            assert row.last_error == f"StorageError: {backend.message}"
            until(lambda: len(recorder.offsets) == len(store))
            until(lambda: worker.rows()[0].state == "running")
            assert not worker.runners["c"].stats.retrying
        finally:
            worker.stop()
            assert worker.wait(10)
            worker.close()


def test_the_worker_shows_a_consumer_retrying_before_it_ever_held_its_lease(
    store: chanlog.EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker

    settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c", **FAST), "rec"),))
    worker = Worker(store, store.bus, settings, {"rec": Recorder}, {})
    runner = worker.runners["c"]
    real_start = runner.start
    refusals = 3  # 0.1 + 0.2 + 0.4 s of backoff

    def restarting(*, wait: bool = True, stop: threading.Event | None = None) -> bool:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise StorageError("the database is restarting")
        return real_start(wait=wait, stop=stop)

    monkeypatch.setattr(runner, "start", restarting)
    worker.start()
    try:
        until(lambda: worker.rows()[0].state == "retrying")
        assert not runner.started
        assert worker.rows()[0].last_error == "StorageError: the database is restarting"
        until(lambda: worker.rows()[0].state == "running")
    finally:
        worker.stop()
        assert worker.wait(10)
        worker.close()


def test_the_worker_names_who_holds_the_lease_of_a_consumer_it_waits_for(
    store: chanlog.EventStore, running: Running
) -> None:
    """A consumer kept waiting by another runner says by which one, in the row and in
    ``chanlog run``'s table and log lines, until it takes the lease itself."""
    from chanlog.bus.settings import BusSettings, ConsumerSettings
    from chanlog.bus.spec import ConsumerSpec
    from chanlog.bus.worker import Worker
    from chanlog.cli.commands.bus import _cells, _plain

    other = store.bus.consumer("c", Recorder(), **FAST)
    stop_other, thread = running(other)
    until(lambda: other.started)
    settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c", **FAST), "rec"),))
    worker = Worker(store, store.bus, settings, {"rec": Recorder}, {})
    worker.start()
    try:
        row = worker.rows()[0]
        assert (row.state, row.holder) == ("waiting", other.holder)
        assert _cells(row)[2] == f"waiting (lease held by {other.holder})"
        lines: dict[str, str] = {}
        _plain([row], lines)
        assert f"lease_holder={other.holder}" in lines["c"]
        stop_other.set()
        thread.join(10)  # a runner that stops lets its lease go
        until(lambda: worker.rows()[0].state == "running")
        assert worker.rows()[0].holder is None
        assert _cells(worker.rows()[0])[2] == "running"
    finally:
        worker.stop()
        assert worker.wait(10)
        worker.close()


def test_the_worker_shows_an_ingest_retrying_when_its_source_says_so(
    store: chanlog.EventStore,
) -> None:
    from chanlog.bus.settings import BusSettings, IngestSettings
    from chanlog.bus.worker import Worker

    class Source:
        def __init__(self, name: str) -> None:
            self.name = name
            self.retrying = True

        def run(self, store: object, stop: threading.Event) -> None:
            stop.wait(30)

        def stats(self) -> dict[str, object]:
            return {"appended": 0, "parked": 0, "retrying": self.retrying}

    settings = BusSettings(ingest=(IngestSettings("feed", "fake", {}),))
    worker = Worker(store, store.bus, settings, {}, {"fake": Source})
    worker.start()
    try:
        assert worker.rows()[0].state == "retrying"
        worker.ingests["feed"].retrying = False  # type: ignore[attr-defined]
        assert worker.rows()[0].state == "running"
    finally:
        worker.stop()
        assert worker.wait(10)
        worker.close()
    assert worker.rows()[0].state == "stopped"


def test_a_runner_that_lost_its_lease_waits_for_it_and_goes_on(
    store: chanlog.EventStore, running: Running
) -> None:
    first = Recorder()
    runner = store.bus.consumer("c", first, lease_ttl=0.3, backoff=[0.0])
    stop, thread = running(runner)
    until(lambda: len(first.offsets) == len(store))
    runner._lease._stop.set()  # frozen: its lease runs out and another runner takes it
    taker = store.bus.consumer("c", Recorder(), lease_ttl=0.3, backoff=[0.0])
    assert taker.start(wait=True)
    fill(store, seed=9)
    taker.drain()
    handed_by_taker = len(store)
    taker.close()
    fill(store, seed=10)  # the first runner takes the lease again and handles these
    until(lambda: first.offsets[-1] == len(store) - 1)
    assert thread.is_alive()
    stop.set()
    thread.join(10)
    assert first.offsets[-(len(store) - handed_by_taker) :] == list(
        range(handed_by_taker, len(store))
    )
    assert store.bus.consumers.state("c").position == len(store)


@pytest.mark.parametrize("stage", ["begin", "commit"])
def test_a_storage_failure_committing_a_handlers_appends_is_not_the_handlers(
    stage: WriteStage, running: Running
) -> None:
    """Retried by the run, not counted as a failed try, never parked: whether the write
    transaction fails to begin or is refused at its commit."""
    objective = "0x" + "ef" * 32
    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        tries: list[int] = []

        def approve(record: RecordedEvent) -> list[chanlog.Event] | None:
            tries.append(record.offset)
            if record.event_type == "objective-created":
                return [ObjectiveApproved(objective_id=objective, timestamp_ms=2)]
            return None

        store.append(
            ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
        )
        runner = store.bus.consumer("approver", approve, max_deliver=1, **FAST)
        backend.fail_writes(2, at=stage)  # the next two commits of the handler's appends
        stop, thread = running(runner)
        until(lambda: len(store) == 2 and store.bus.consumers.state("approver").position == 2)
        stop.set()
        thread.join(10)
        assert runner.stats.parked == 0
        assert runner.stats.failures == 0
        assert store.bus.consumers.parked("approver") == []
        assert [r.event_type for r in store] == ["objective-created", "objective-approved"]
        assert backend.failed_writes == 2 and backend.writes_to_fail == 0
        assert tries.count(0) >= 2  # handed over again after each failed commit


def test_storage_failures_are_retried_after_a_doubling_pause() -> None:
    from chanlog.bus.backoff import storage_retry_pause

    pauses = [storage_retry_pause(failures) for failures in range(1, 9)]
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert storage_retry_pause(10**6) == 5.0  # hours of failures: still 5 s, no overflow


def test_a_consumer_stops_at_a_record_its_pattern_may_match_but_no_plugin_registers(
    tmp_path: Path,
) -> None:
    """The tips plugin gave ``tip-paid`` the group ``tips``; a consumer of ``chanlog.tips.>``
    in a process without the plugin cannot know it, so it stops at the tip, unable to decode
    it, instead of passing over it (it took an unregistered type for one of the group
    ``plugin`` and committed its position past the tip). A pattern that names other types
    passes over it, as it would with the plugin."""
    with_tips = host_with_tips()
    path = tmp_path / "node.db"
    objective = "0x" + "0b" * 32
    with chanlog.EventStore(SqliteBackend(path), plugins=with_tips, projections=[]) as writer:
        writer.append(
            ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
        )
        writer.append(TipPaid(channel_id="0x" + "cc" * 32, amount=5, timestamp_ms=2))
        writer.append(ObjectiveApproved(objective_id=objective, timestamp_ms=3))
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        seen: list[int] = []
        tips = store.bus.consumer(
            "tips", lambda record: seen.append(record.offset), subjects="chanlog.tips.>"
        )
        with pytest.raises(DecodeError, match="offset 1: event type 'tip-paid' is not registered"):
            tips.run(threading.Event())
        # What `chanlog consumers` shows in another process: where it stopped, and why.
        state = store.bus.consumers.state("tips")
        assert state.position == 1 and state.lease_holder is None
        assert state.last_error is not None
        assert state.last_error.startswith(
            "the run stopped: DecodeError: offset 1: event type 'tip-paid' is not registered"
        )
    # The plugin installed, the consumer goes on from the tip, and its error is cleared.
    with chanlog.EventStore(SqliteBackend(path), plugins=with_tips, projections=[]) as store:
        handled: list[int] = []
        tips = store.bus.consumer(
            "tips",
            lambda record: handled.append(record.offset),
            subjects="chanlog.tips.>",
            lease_ttl=0.5,
        )
        stop = threading.Event()
        thread = threading.Thread(target=tips.run, args=(stop,))
        thread.start()
        try:
            until(lambda: store.bus.consumers.state("tips").last_error is None)
        finally:
            stop.set()
            thread.join(20)
        assert handled == [1]
        assert store.bus.consumers.state("tips").position == 3
        approvals = store.bus.consumer(
            "approvals",
            lambda record: seen.append(record.offset),
            subjects="chanlog.*.objective-approved.>",
        )
        assert approvals.drain() == 3
        approvals.close()
        assert seen == [2]
