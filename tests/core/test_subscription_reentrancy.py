"""A subscriber's callback may use the store it subscribes to: append (a node reacting to an
event), subscribe or close subscriptions, read, and close the store, on the memory backend
and on durable SQLite (group commit). Nothing deadlocks, nothing is lost or delivered twice
(ADR 0065). Each test runs its body on a thread joined with a timeout, so a deadlock fails
the test instead of hanging the suite."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bounded_threads import DEADLOCK, bounded
from chanlog import ChanlogError, EventStore, RecordedEvent
from chanlog.backends.sqlite import SqliteBackend
from chanlog.subscriptions import Subscription
from chanlog_samples import make_signed


@pytest.fixture(params=["memory", "sqlite"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], EventStore]]:
    """Opens stores on one log: memory (no group commit) or durable SQLite (group commit)."""
    opened: list[EventStore] = []

    def make() -> EventStore:
        if request.param == "memory":
            store = EventStore(projections=[])
        else:
            store = EventStore(SqliteBackend(tmp_path / "log.db"), projections=[])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_a_callback_that_appends(open_store: Callable[[], EventStore]) -> None:
    """A node reacting to a record by appending another: every subscriber gets both, in
    order, once; the reaction's offset is returned to the callback."""
    store = open_store()
    reactor: list[int] = []
    watcher: list[int] = []
    returned: list[int] = []

    def react(record: RecordedEvent) -> None:
        reactor.append(record.offset)
        if record.event.turn_num < 5:  # type: ignore[attr-defined]
            returned.append(store.append(make_signed(record.event.turn_num + 100)))  # type: ignore[attr-defined]

    def body() -> None:
        store.subscribe(react)
        store.subscribe(lambda record: watcher.append(record.offset))
        for turn in range(5):
            store.append(make_signed(turn))

    bounded(body)
    assert len(store) == 10
    assert reactor == watcher == list(range(10))
    assert returned == [1, 3, 5, 7, 9]


def test_a_slow_callback_holds_up_no_append(open_store: Callable[[], EventStore]) -> None:
    """While a callback is busy on one thread, another thread's append returns (its record
    waits for the delivery running). On SQLite the leader of a group used to deliver
    before handing the lead on: every other appender waited for the slowest callback."""
    store = open_store()
    busy, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(record: RecordedEvent) -> None:
        seen.append(record.offset)
        if record.offset == 0:
            busy.set()
            release.wait(DEADLOCK)

    store.subscribe(slow)
    first = threading.Thread(target=store.append, args=(make_signed(0),), daemon=True)
    first.start()
    assert busy.wait(DEADLOCK)
    try:
        assert bounded(lambda: store.append(make_signed(1))) == 1
    finally:
        release.set()
    first.join(DEADLOCK)
    assert not first.is_alive()
    assert seen == [0, 1]  # delivered by the loop that was busy, after offset 0


def test_a_callback_that_subscribes(open_store: Callable[[], EventStore]) -> None:
    """A subscription made from a callback starts where it says: live, at the next record
    committed; from an offset, caught up from the log first; each record once, in order,
    the records already queued behind the one in hand included."""
    store = open_store()
    made: dict[str, list[int]] = {"live": [], "from_0": [], "from_2": []}

    def subscribing(record: RecordedEvent) -> None:
        if record.offset == 1:
            store.subscribe(lambda r: made["live"].append(r.offset))
            store.subscribe(lambda r: made["from_0"].append(r.offset), from_offset=0)
            store.subscribe(lambda r: made["from_2"].append(r.offset), from_offset=2)

    def body() -> None:
        store.subscribe(subscribing)
        store.append_batch([make_signed(turn) for turn in range(4)])  # 1 has 2, 3 behind it
        store.append(make_signed(4))

    bounded(body)
    assert made == {"live": [4], "from_0": [0, 1, 2, 3, 4], "from_2": [2, 3, 4]}


def test_a_catch_up_callback_that_waits_for_another_threads_append(
    open_store: Callable[[], EventStore],
) -> None:
    """The last stretch of a catch-up used to run its callbacks under the store's append
    lock: a callback waiting for an append made on another thread (work handed to a pool)
    waited forever."""
    store = open_store()
    store.append_batch([make_signed(turn) for turn in range(3)])
    seen: list[int] = []

    def handing_off(record: RecordedEvent) -> None:
        seen.append(record.offset)
        if record.offset == 2:  # the last record of the first stretch: one more appears
            store.append(make_signed(50))
        elif record.offset == 3:  # caught up in the last stretch
            helper = threading.Thread(target=store.append, args=(make_signed(60),), daemon=True)
            helper.start()
            helper.join(DEADLOCK)
            assert not helper.is_alive(), "the helper's append waited for the catch-up"

    subscription = bounded(lambda: store.subscribe(handing_off, from_offset=0))
    assert subscription.failure_count == 0, list(subscription.failures)
    store.append(make_signed(5))
    assert seen == [0, 1, 2, 3, 4, 5]


def test_a_callback_that_closes_subscriptions(open_store: Callable[[], EventStore]) -> None:
    """A callback may close its own subscription or another: a closed one gets nothing
    after the record in hand (which the other gets or not: blinker calls the receivers of
    one record in no set order); the rest get everything."""
    store = open_store()
    own: list[int] = []
    other: list[int] = []
    witness: list[int] = []
    subscriptions: dict[str, Any] = {}

    def closing_self(record: RecordedEvent) -> None:
        own.append(record.offset)
        if record.offset == 1:
            subscriptions["own"].close()

    def closing_other(record: RecordedEvent) -> None:
        if record.offset == 2:
            subscriptions["other"].close()

    def body() -> None:
        subscriptions["own"] = store.subscribe(closing_self)
        store.subscribe(closing_other)
        subscriptions["other"] = store.subscribe(lambda r: other.append(r.offset))
        store.subscribe(lambda r: witness.append(r.offset))
        store.append_batch([make_signed(turn) for turn in range(5)])

    bounded(body)
    assert own == [0, 1] and other in ([0, 1], [0, 1, 2]) and witness == [0, 1, 2, 3, 4]
    assert len(store.subscriptions) == 2


def test_a_subscription_closed_while_filling_a_gap_gets_nothing_more() -> None:
    """A live record ahead of a subscription is preceded by the missing ones from the log;
    a callback that closes the subscription on one of those used to be handed the live
    record all the same."""
    store = EventStore(projections=[])
    store.append_batch([make_signed(turn) for turn in range(4)])
    seen: list[int] = []
    holder: dict[str, Subscription] = {}

    def closing(record: RecordedEvent) -> None:
        seen.append(record.offset)
        if record.offset == 1:
            holder["subscription"].close()

    # A subscription that missed records 0..2 (as behind a remote broker) is handed 3.
    subscription = holder["subscription"] = Subscription(store, closing, 0)
    subscription(store, record=next(iter(store.read_range(3, 4))))
    assert seen == [0, 1]


def test_a_callback_that_reads(tmp_path: Path) -> None:
    """A callback may read the log and the state, on a shared log too, where reading "now"
    folds and delivers what another process appended (ADR 0060): those records are
    delivered after the one in hand, once each, in order."""
    from chanlog.workload import Workload

    events = Workload(seed=1, channels=1, turns=2, interleave=1).events()
    objective = events[0].objective_id  # type: ignore[attr-defined]
    with (
        EventStore(SqliteBackend(tmp_path / "log.db")) as node,
        EventStore(SqliteBackend(tmp_path / "log.db")) as other,
    ):
        seen: list[int] = []
        read: list[int] = []

        def reading(record: RecordedEvent) -> None:
            seen.append(record.offset)
            read.append(len(list(node.read_range(0, record.offset + 1))))
            node.state("objective", objective)
            node.reconstruct("objective", objective, at=record.offset + 1)
            if record.offset == 0:
                other.append_batch(events[1:4])  # folded by node.state() on the next record

        def body() -> None:
            subscription = node.subscribe(reading)
            node.append(events[0])
            node.state("objective", objective)  # node folds what other appended
            assert subscription.failure_count == 0, list(subscription.failures)

        bounded(body)
        assert seen == [0, 1, 2, 3] and read == [1, 2, 3, 4]


def test_a_callback_that_closes_the_store(open_store: Callable[[], EventStore]) -> None:
    """The append whose record it was returns its offset; the records queued behind it
    reach no subscription; the store is closed."""
    store = open_store()
    seen: list[int] = []

    def closing(record: RecordedEvent) -> None:
        seen.append(record.offset)
        store.close()

    def body() -> list[int]:
        store.subscribe(closing)
        return store.append_batch([make_signed(turn) for turn in range(3)])

    assert bounded(body) == [0, 1, 2]
    assert seen == [0] and store.closed and store.subscriptions == []


def test_the_store_closed_while_a_callback_is_busy(open_store: Callable[[], EventStore]) -> None:
    """close() from another thread does not wait for the callback in hand; what was queued
    behind it reaches no subscription."""
    store = open_store()
    busy, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(record: RecordedEvent) -> None:
        seen.append(record.offset)
        busy.set()
        release.wait(DEADLOCK)

    store.subscribe(slow)
    first = threading.Thread(target=store.append, args=(make_signed(0),), daemon=True)
    first.start()
    assert busy.wait(DEADLOCK)
    try:
        bounded(lambda: store.append(make_signed(1)))  # queued behind offset 0
        bounded(store.close)
    finally:
        release.set()
    first.join(DEADLOCK)
    assert not first.is_alive() and seen == [0]


def test_subscribing_to_a_closed_store_is_refused(open_store: Callable[[], EventStore]) -> None:
    store = open_store()
    store.close()
    with pytest.raises(ChanlogError, match="closed"):
        store.subscribe(lambda record: None)
    with pytest.raises(ChanlogError, match="closed"):
        store.subscribe(lambda record: None, from_offset=0)
