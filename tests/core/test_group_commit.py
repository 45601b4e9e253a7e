"""Group commit (ADR 0029): threads appending to a durable store at once share one
transaction and one commit, and each keeps every guarantee it had alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest

from chanlog import (
    ConcurrencyError,
    EventStore,
    InvalidTransition,
    ObjectiveApproved,
    ObjectiveCreated,
    StateSigned,
)
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_transaction import SqliteTransaction
from chanlog.errors import PluginError, StorageError
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from chanlog.testing.plugins import RefusingProjection
from chanlog_samples import make_signed, thread_channel, thread_channels_created

THREADS = 8


class CountingSqlite(SqliteBackend):
    """Counts write transactions."""

    transactions = 0

    def write(self) -> SqliteTransaction:
        self.transactions += 1
        return super().write()


def _in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # collected, asserted by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "an appending thread never returned (lost wake-up?)"
    return results


def _create_channels(store: EventStore) -> None:
    store.append_batch(thread_channels_created(THREADS))


class _GatedSqlite(CountingSqlite):
    """Holds its next write transaction open until ``gate`` is set: a leader kept busy
    while other threads queue behind it."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def write(self) -> SqliteTransaction:
        gate = self.gate
        if gate is not None:
            self.gate = None
            self.entered.set()
            gate.wait(30)
        return super().write()


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[tuple[EventStore, _GatedSqlite]]:
    backend = _GatedSqlite(tmp_path / "log.db", durability="full")
    with EventStore(backend) as store:
        _create_channels(store)
        yield store, backend


def test_threads_share_commits_and_keep_dense_offsets_and_their_order(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, backend = durable
    per_thread = 60
    seen: list[int] = []
    store.subscribe(lambda record: seen.append(record.offset))
    before = backend.transactions

    def append_turns(thread: int) -> list[int]:
        return [
            store.append(make_signed(turn, thread_channel(thread))) for turn in range(per_thread)
        ]

    results = _in_threads(THREADS, append_turns)
    returned = [offset for offsets in results for offset in offsets]
    assert sorted(returned) == list(range(THREADS, len(store)))
    assert len(returned) == THREADS * per_thread
    assert seen == list(range(THREADS, len(store)))  # notified once each, in offset order
    for thread, offsets in enumerate(results):
        assert offsets == sorted(offsets)
        for turn, offset in enumerate(offsets):
            record = next(store.read_range(offset, offset + 1))
            assert record.event == make_signed(turn, thread_channel(thread))  # its own event
    assert backend.transactions - before < len(returned)  # some commits were shared
    assert store.verify() == len(store)


def test_a_refused_append_fails_alone(durable: tuple[EventStore, _GatedSqlite]) -> None:
    store, _ = durable
    objective = "0x" + "ee" * 32

    for turn in range(20):

        def append(thread: int, turn: int = turn) -> int:
            if thread % 2:
                # Approving an objective that does not exist: refused, whatever the group.
                return store.append(ObjectiveApproved(objective_id=objective, timestamp_ms=thread))
            return store.append(make_signed(turn, thread_channel(thread)))

        results = _in_threads(THREADS, append)
        for thread, result in enumerate(results):
            if thread % 2:
                assert isinstance(result, InvalidTransition)
            else:
                assert isinstance(result, int)
    assert {r.event_type for r in store.read_from(THREADS)} == {"state-signed"}
    assert store.verify() == len(store) == THREADS + 20 * THREADS // 2


def test_expected_versions_in_one_group(durable: tuple[EventStore, _GatedSqlite]) -> None:
    store, _ = durable
    objective = "0x" + "dd" * 32

    def create(thread: int) -> int:
        event = ObjectiveCreated(
            objective_id=objective, objective_type="DirectFund", timestamp_ms=thread
        )
        return store.append(event, expected_version=0)

    results = _in_threads(THREADS, create)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1
    losers = [r for r in results if not isinstance(r, int)]
    assert all(isinstance(r, ConcurrencyError | InvalidTransition) for r in losers)
    assert len(store) == THREADS + 1


def test_the_same_event_from_many_threads_goes_in_once(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, _ = durable
    for turn in range(10):
        event = make_signed(turn, thread_channel(0))

        def append(_thread: int, event: StateSigned = event) -> int:
            return store.append(event)

        results = _in_threads(THREADS, append)
        assert len(set(results)) == 1 and isinstance(results[0], int)
    assert len(store) == THREADS + 10


def test_batches_grouped_with_singles_stay_atomic(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, _ = durable

    def append(thread: int) -> list[int] | Exception:
        channel = thread_channel(thread)
        if thread == 3:
            # A batch whose second event is refused (a signer twice for turn 0): none of it.
            signed = make_signed(0, channel)
            twice = StateSigned(
                channel_id=channel,
                turn_num=0,
                state_hash="0x" + "ff" * 32,
                signer=signed.signer,
                signature=signed.signature,
                timestamp_ms=5,
            )
            return store.append_batch([signed, twice])
        return store.append_batch([make_signed(turn, channel) for turn in range(3)])

    results = _in_threads(THREADS, append)
    assert isinstance(results[3], InvalidTransition)
    assert results[3].index == 1
    assert store.stream_version(thread_channel(3)) == 1  # its channel-created only
    for thread, offsets in enumerate(results):
        if thread != 3:
            assert len(offsets) == 3 and offsets == sorted(offsets)
    assert len(store) == THREADS + 3 * (THREADS - 1)
    assert store.verify() == len(store)


def test_a_failing_commit_fails_the_whole_group(tmp_path: Path) -> None:
    class FailingCommits(SqliteBackend):
        fail = False

        # a wrapper the store only enters and leaves, not a SqliteTransaction
        def write(self) -> AbstractContextManager[Any]:  # type: ignore[override]
            inner = super().write()
            backend = self

            class Failing:
                def __enter__(self) -> Any:
                    return inner.__enter__()

                def __exit__(self, *exc: Any) -> None:
                    if backend.fail and exc[0] is None:
                        inner.__exit__(RuntimeError, RuntimeError("disk gone"), None)
                        raise OSError("disk gone")
                    inner.__exit__(*exc)

            return Failing()

    backend = FailingCommits(tmp_path / "log.db")
    with EventStore(backend) as store:
        _create_channels(store)
        backend.fail = True
        results = _in_threads(THREADS, lambda t: store.append(make_signed(1, thread_channel(t))))
        assert all(isinstance(r, OSError) for r in results)
        backend.fail = False
        assert len(store) == THREADS
        assert store.append(make_signed(1, thread_channel(0))) == THREADS  # the store goes on


def test_many_rounds_of_contention_never_lose_a_wake_up(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal")
    with EventStore(backend) as store:
        _create_channels(store)
        for round_number in range(30):

            def append(thread: int, n: int = round_number) -> list[int]:
                return [
                    store.append(make_signed(n * 5 + i, thread_channel(thread))) for i in range(5)
                ]

            results = _in_threads(THREADS, append)
            assert all(isinstance(offsets, list) for offsets in results)
        assert len(store) == THREADS + 30 * 5 * THREADS


class _InterruptedWait:
    """A lock standing in for a waiting caller's own (``AppendRequest.wake``) whose wait
    is interrupted (Ctrl-C): at once, or right as it is woken (handed the lead)."""

    def __init__(self, when_woken: bool) -> None:
        self._lock = threading.Lock()
        self._when_woken = when_woken
        self._acquired = 0

    def acquire(self) -> bool:
        self._acquired += 1
        if self._acquired == 1:  # taken by its caller as it queues
            return self._lock.acquire()
        if self._when_woken:
            self._lock.acquire()
        raise KeyboardInterrupt

    def release(self) -> None:
        self._lock.release()


def _interrupt_the_next_wait(monkeypatch: pytest.MonkeyPatch, *, when_woken: bool) -> None:
    """The next caller that queues gets an interrupted wait; later ones wait normally."""
    from chanlog import writing

    made: list[object] = []

    def lock() -> object:
        made.append(None)
        return _InterruptedWait(when_woken) if len(made) == 1 else threading.Lock()

    monkeypatch.setattr(writing, "threading", type("T", (), {"Lock": staticmethod(lock)}))


def _queued(store: EventStore, count: int) -> None:
    writer = store._writer  # the test waits for callers to have queued
    for _ in range(3000):
        if len(writer._waiting) >= count:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the callers never queued")


def _started(
    work: Callable[[], Any], name: str | None = None
) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, outcome


def _held_lead(
    store: EventStore, backend: _GatedSqlite, event: StateSigned
) -> tuple[threading.Event, threading.Thread, list[Any]]:
    """A first caller appending ``event`` leads, its transaction held open until the
    returned gate is set: the callers started meanwhile queue behind it."""
    gate = backend.gate = threading.Event()
    leader, led = _started(lambda: store.append(event))
    assert backend.entered.wait(30)
    return gate, leader, led


def test_a_caller_interrupted_while_it_waits_withdraws_its_append(
    durable: tuple[EventStore, _GatedSqlite], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, backend = durable
    gate, leader, led = _held_lead(store, backend, make_signed(1, thread_channel(0)))
    _interrupt_the_next_wait(monkeypatch, when_woken=False)
    waiter, waited = _started(lambda: store.append(make_signed(1, thread_channel(1))))
    waiter.join(30)
    gate.set()
    leader.join(30)
    assert isinstance(waited[0], KeyboardInterrupt)
    assert led == [THREADS]
    assert len(store) == THREADS + 1  # the interrupted append was not written
    monkeypatch.undo()
    assert store.append(make_signed(1, thread_channel(1))) == THREADS + 1  # nobody holds a lead


def test_a_caller_interrupted_as_it_is_handed_the_lead_passes_it_on(
    durable: tuple[EventStore, _GatedSqlite], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, backend = durable
    gate, leader, led = _held_lead(store, backend, make_signed(1, thread_channel(0)))
    _interrupt_the_next_wait(monkeypatch, when_woken=True)
    first, interrupted = _started(lambda: store.append(make_signed(1, thread_channel(1))))
    _queued(store, 1)
    second, written = _started(lambda: store.append(make_signed(1, thread_channel(2))))
    _queued(store, 2)
    gate.set()
    for thread in (leader, first, second):
        thread.join(30)
    assert isinstance(interrupted[0], KeyboardInterrupt)
    assert led == [THREADS]
    assert written == [THREADS + 1]  # the lead went on to the next caller
    assert [r.event for r in store.read_from(THREADS)] == [
        make_signed(1, thread_channel(0)),
        make_signed(1, thread_channel(2)),
    ]


def test_a_leader_interrupted_while_it_gathers_company_withdraws_its_append(
    tmp_path: Path,
) -> None:
    backend = SqliteBackend(tmp_path / "log.db", durability="full")
    with EventStore(backend) as store:
        _create_channels(store)
        writer = store._writer  # the test waits for callers to have queued

        class Interrupted:
            def wait(self, timeout: float) -> None:
                raise KeyboardInterrupt

        real = writer._gathered
        # a stand-in for the writer's condition that only interrupts
        writer._last_group, writer._gathered = 3, cast(threading.Condition, Interrupted())
        with pytest.raises(KeyboardInterrupt):
            store.append(make_signed(1, thread_channel(0)))
        writer._gathered = real
        assert len(store) == THREADS
        assert store.append(make_signed(1, thread_channel(0))) == THREADS  # waits once, then writes
        assert store.append(make_signed(2, thread_channel(0))) == THREADS + 1  # alone: at once


def _one_group(
    store: EventStore, backend: _GatedSqlite, appends: list[Callable[[], Any]]
) -> list[Any]:
    """Run ``appends`` as one group, in this order: a first caller keeps the lead (its
    transaction held open) until all of them have queued behind it."""
    gate, leader, _ = _held_lead(store, backend, make_signed(900, thread_channel(7)))
    started = []
    for number, append in enumerate(appends, start=1):
        started.append(_started(append))
        _queued(store, number)
    gate.set()
    leader.join(30)
    for thread, _ in started:
        thread.join(30)
    return [outcome[0] for _, outcome in started]


def test_a_group_holding_an_id_twice_or_a_known_one_is_written_append_by_append(
    tmp_path: Path,
) -> None:
    backend = _GatedSqlite(tmp_path / "log.db", durability="full")
    # No projections: nothing refuses a repeated event, so the insert finds the repeats.
    with EventStore(backend, projections=[]) as store:
        _create_channels(store)
        known = store.append(make_signed(1, thread_channel(3)))
        fresh = make_signed(1, thread_channel(1))
        results = _one_group(
            store,
            backend,
            [
                lambda: store.append(fresh),
                lambda: store.append(make_signed(1, thread_channel(2))),
                lambda: store.append(fresh),  # the same id twice in the group
                lambda: store.append(make_signed(1, thread_channel(3))),  # already in the log
            ],
        )
        after_leader = known + 2
        assert results == [after_leader, after_leader + 1, after_leader, known]
        assert len(store) == after_leader + 2
        assert store.verify() == len(store)


def test_a_group_with_a_refused_append_writes_the_others(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, backend = durable
    results = _one_group(
        store,
        backend,
        [
            lambda: store.append(make_signed(1, thread_channel(1))),
            lambda: store.append(make_signed(1, "0x" + "99" * 32)),  # no such channel
            lambda: store.append(make_signed(1, thread_channel(2))),
        ],
    )
    assert results[0] == THREADS + 1
    assert isinstance(results[1], InvalidTransition)
    assert results[2] == THREADS + 2
    assert len(store) == THREADS + 3


def test_a_group_notifies_what_it_committed_and_nothing_it_refused(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, backend = durable
    seen: list[int] = []
    store.subscribe(lambda record: seen.append(record.offset))
    results = _one_group(
        store,
        backend,
        [
            lambda: store.append(make_signed(1, thread_channel(1))),
            lambda: store.append(make_signed(1, "0x" + "99" * 32)),  # no such channel
            lambda: store.append_batch(
                [make_signed(2, thread_channel(2)), make_signed(3, "0x" + "98" * 32)]
            ),
            lambda: store.append(make_signed(1, thread_channel(2))),
        ],
    )
    assert isinstance(results[1], InvalidTransition) and isinstance(results[2], InvalidTransition)
    assert seen == list(range(THREADS, len(store))) == [THREADS, THREADS + 1, THREADS + 2]


def test_a_leader_interrupted_before_writing_fails_its_group_cleanly(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, backend = durable
    writer = store._writer  # the store's append lock is swapped to interrupt the next leader

    class Interrupting:
        def __enter__(self) -> None:
            raise KeyboardInterrupt

        def __exit__(self, *exc: object) -> None:
            return None

    gate, leader, led = _held_lead(store, backend, make_signed(1, thread_channel(0)))
    first, interrupted = _started(lambda: store.append(make_signed(1, thread_channel(1))))
    _queued(store, 1)
    second, failed = _started(lambda: store.append(make_signed(1, thread_channel(2))))
    _queued(store, 2)
    real = writer._lock
    writer._lock = cast(threading.RLock, Interrupting())  # a stand-in that only interrupts
    gate.set()
    for thread in (leader, first, second):
        thread.join(30)
    writer._lock = real
    assert led == [THREADS]
    assert isinstance(interrupted[0], KeyboardInterrupt)
    assert isinstance(failed[0], StorageError)
    assert "interrupted" in str(failed[0])
    assert len(store) == THREADS + 1
    assert store.append(make_signed(1, thread_channel(2))) == THREADS + 1  # the store goes on


class _FailsOnTurn13(RefusingProjection):
    """A projection with a bug: it raises on every state signed at turn 13."""

    name = "fails-on-turn-13"

    def stage(self) -> Any:
        class Stage:
            def apply(self, event: Any, offset: int) -> None:
                if getattr(event, "turn_num", None) == 13:
                    raise ZeroDivisionError("turn 13")

            def commit(self) -> None:
                pass

        return Stage()


class _FaultyProjectionPlugin:
    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        register("fails-on-turn-13", _FailsOnTurn13)


def test_a_projection_failing_on_one_append_of_a_group_fails_that_append_alone(
    tmp_path: Path,
) -> None:
    host = PluginHost(load_entry_points=False)
    host.register(_FaultyProjectionPlugin(), name="faulty")
    backend = _GatedSqlite(tmp_path / "log.db", durability="full")
    with EventStore(backend, plugins=host) as store:
        _create_channels(store)
        results = _one_group(
            store,
            backend,
            [
                lambda: store.append(make_signed(1, thread_channel(1))),
                lambda: store.append(make_signed(13, thread_channel(2))),  # the projection's bug
                lambda: store.append(make_signed(1, thread_channel(3))),
            ],
        )
        assert results[0] == THREADS + 1
        assert isinstance(results[1], PluginError)
        assert "fails-on-turn-13" in str(results[1]) and "ZeroDivisionError" in str(results[1])
        assert results[2] == THREADS + 2
        assert len(store) == THREADS + 3
        assert store.stream_version(thread_channel(2)) == 1  # its channel-created only
        assert store.verify() == len(store)


class _InterruptedAfterCommit(_GatedSqlite):
    """Its write transaction number ``interrupt_at`` commits, then its thread is
    interrupted (Ctrl-C arriving while the commit returns)."""

    interrupt_at = 0
    writes = 0

    # a wrapper the store only enters and leaves, not a SqliteTransaction
    def write(self) -> AbstractContextManager[Any]:  # type: ignore[override]
        inner = super().write()
        self.writes += 1
        interrupted = self.writes == self.interrupt_at

        class Interrupted:
            def __enter__(self) -> Any:
                return inner.__enter__()

            def __exit__(self, *exc: Any) -> None:
                inner.__exit__(*exc)
                if interrupted and exc[0] is None:
                    raise KeyboardInterrupt

        return Interrupted()


def test_a_leader_interrupted_as_its_group_commits_interrupts_no_other_caller(
    tmp_path: Path,
) -> None:
    """The group's commit landed: its leader (the first queued) gets the interruption, the
    others a StorageError saying the append may have been written (not the leader's
    KeyboardInterrupt, in threads nobody interrupted); the store folds and delivers what
    landed at once, and appending again returns each event's offset."""
    backend = _InterruptedAfterCommit(tmp_path / "log.db", durability="full")
    with EventStore(backend) as store:
        _create_channels(store)
        seen: list[int] = []
        store.subscribe(lambda record: seen.append(record.offset))
        backend.interrupt_at = backend.writes + 2  # the group behind the gated leader
        results = _one_group(
            store,
            backend,
            [partial(store.append, make_signed(1, thread_channel(t))) for t in range(1, 4)],
        )
        assert isinstance(results[0], KeyboardInterrupt)
        assert all(isinstance(result, StorageError) for result in results[1:]), results
        assert all("may have been written" in str(result) for result in results[1:])
        assert len(store) == THREADS + 4
        assert seen == list(range(THREADS, THREADS + 4))  # delivered without another write
        assert store._writer._inline.folded == THREADS + 4  # the fold caught up at once
        again = [store.append(make_signed(1, thread_channel(t))) for t in range(1, 4)]
        assert again == [THREADS + 1, THREADS + 2, THREADS + 3]


def _interrupt_once_in(thread_name: str) -> Callable[[], None]:
    """A step that raises KeyboardInterrupt the first time it runs on ``thread_name`` (a
    signal arriving between two steps of the group's bookkeeping)."""
    fired: list[bool] = []

    def step() -> None:
        if threading.current_thread().name == thread_name and not fired:
            fired.append(True)
            raise KeyboardInterrupt

    return step


def _appends_go_on(store: EventStore, channel: str, turn: int) -> int:
    thread, outcome = _started(lambda: store.append(make_signed(turn, channel)))
    thread.join(10)
    assert not thread.is_alive(), "the next append never returned: the lead was lost"
    assert isinstance(outcome[0], int), outcome
    return int(outcome[0])


def test_a_caller_interrupted_as_it_takes_the_lead_it_was_handed_passes_it_on(
    durable: tuple[EventStore, _GatedSqlite], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, backend = durable
    writer = store._writer  # the step between being handed the lead and leading
    interrupt = _interrupt_once_in("interrupted")
    lead = writer._lead

    def interrupted_lead(request: Any) -> None:
        interrupt()
        lead(request)

    monkeypatch.setattr(writer, "_lead", interrupted_lead)
    gate, leader, _ = _held_lead(store, backend, make_signed(1, thread_channel(0)))
    first, interrupted = _started(
        lambda: store.append(make_signed(1, thread_channel(1))), name="interrupted"
    )
    _queued(store, 1)
    second, written = _started(lambda: store.append(make_signed(1, thread_channel(2))))
    _queued(store, 2)
    gate.set()
    for thread in (leader, first, second):
        thread.join(10)
        assert not thread.is_alive(), "a caller never returned: the lead was lost"
    assert isinstance(interrupted[0], KeyboardInterrupt)
    assert written == [THREADS + 1]
    assert _appends_go_on(store, thread_channel(3), 1) == THREADS + 2


def test_a_leader_interrupted_as_it_takes_its_group_fails_the_group_cleanly(
    durable: tuple[EventStore, _GatedSqlite], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chanlog import writing

    store, backend = durable
    interrupt = _interrupt_once_in("interrupted")

    class Clock:  # the first step after the group is taken reads the clock
        @staticmethod
        def perf_counter() -> float:
            interrupt()
            return time.perf_counter()

    gate, leader, _ = _held_lead(store, backend, make_signed(1, thread_channel(0)))
    monkeypatch.setattr(writing, "time", Clock)
    first, interrupted = _started(
        lambda: store.append(make_signed(1, thread_channel(1))), name="interrupted"
    )
    _queued(store, 1)
    second, failed = _started(lambda: store.append(make_signed(1, thread_channel(2))))
    _queued(store, 2)
    gate.set()
    for thread in (leader, first, second):
        thread.join(10)
        assert not thread.is_alive(), "a caller of the group never returned"
    assert isinstance(interrupted[0], KeyboardInterrupt)
    assert isinstance(failed[0], StorageError) and "not written" in str(failed[0])
    assert _appends_go_on(store, thread_channel(2), 1) == THREADS + 1


def test_a_caller_alone_interrupted_as_it_takes_the_lead_gives_it_up(
    durable: tuple[EventStore, _GatedSqlite],
) -> None:
    store, _ = durable
    writer = store._writer  # its queue lock, interrupted as its first holder leaves it
    interrupt = _interrupt_once_in("interrupted")
    real = writer._taken

    class Interrupted:
        def __enter__(self) -> None:
            real.acquire()

        def __exit__(self, *exc: object) -> None:
            real.release()
            interrupt()

    writer._taken = Interrupted()  # type: ignore[assignment]
    alone, outcome = _started(
        lambda: store.append(make_signed(1, thread_channel(0))), name="interrupted"
    )
    alone.join(10)
    writer._taken = real
    assert isinstance(outcome[0], KeyboardInterrupt)
    assert _appends_go_on(store, thread_channel(1), 1) == THREADS


def test_eight_threads_under_storage_failures_at_every_stage_keep_every_promise() -> None:
    """Group commit over a backend failing at begin, at commit and after committing (ADR
    0042), with expected versions and refused appends mixed in: an acknowledged append is
    in the log at its offset, once; a failed one appended again returns where it is; the
    store's length, state and subscribers agree with the log."""
    from chanlog.testing import FlakyBackend

    class GroupingFlaky(FlakyBackend):
        groups_commits = True

    backend = GroupingFlaky()
    with EventStore(backend) as store:
        seen: list[int] = []
        store.subscribe(lambda record: seen.append(record.offset))
        _create_channels(store)
        done = threading.Event()

        def fail_at_every_stage() -> None:
            stages = ("begin", "commit", "acknowledgement")
            for number in range(10**6):
                if done.wait(0.0005):
                    return
                backend.fail_writes(1, at=stages[number % 3])  # type: ignore[arg-type]

        acknowledged: dict[str, int] = {}

        def append(thread: int) -> int:
            failed = 0
            for turn in range(1, 41):
                if turn % 6 == 0:
                    with pytest.raises((InvalidTransition, StorageError)):
                        store.append(make_signed(turn, "0x" + "99" * 32))
                event = make_signed(turn, thread_channel(thread))
                while True:  # the caller's retries
                    try:
                        acknowledged[event.event_id] = store.append(
                            event, expected_version=turn if turn % 3 == 0 else None
                        )
                        break
                    except StorageError:
                        failed += 1
            return failed

        failing = threading.Thread(target=fail_at_every_stage)
        failing.start()
        failures = _in_threads(THREADS, append)
        done.set()
        failing.join(30)
        for stage in ("begin", "commit", "acknowledgement"):
            backend.fail_writes(0, at=stage)
        assert all(isinstance(count, int) for count in failures), failures
        assert sum(failures) > 0
        where = {record.event_id: record.offset for record in store.read_from(0)}
        assert len(where) == len(store) == THREADS * 41
        assert {i: where.get(i) for i in acknowledged} == acknowledged
        assert seen == list(range(len(store)))
        assert all(
            store.state("channel", thread_channel(t)).latest_turn == 40 for t in range(THREADS)
        )
        assert store.verify() == len(store)
