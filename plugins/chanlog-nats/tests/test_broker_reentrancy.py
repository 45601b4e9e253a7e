"""ADR 0065 with the ``nats`` broker: a subscriber's callback may use its store (append,
subscribe, close, read, close the store) when its records come from NATS on the broker's
delivery thread, on durable SQLite (group commit). Each body runs on a thread joined with a
timeout, so a deadlock fails the test instead of hanging; live delivery being asynchronous,
results are awaited with ``wait_until`` (a bound, not a timing claim). Each test has a bus
prefix of its own (core NATS subjects ``live.<prefix>.>``; no stream)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chanlog_nats import NatsBroker

from bounded_threads import DEADLOCK, bounded
from chanlog import EventStore, RecordedEvent
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing.events import sample_events

pytestmark = pytest.mark.nats

Wait = Callable[[Callable[[], bool], float, str], None]


@pytest.fixture
def open_store(nats_url: str, tmp_path: Path) -> Iterator[Callable[..., EventStore]]:
    """Opens stores on durable SQLite whose broker is NATS (``url``: another server)."""
    opened: list[EventStore] = []

    def make(url: str = nats_url) -> EventStore:
        store = EventStore(
            SqliteBackend(tmp_path / f"log-{len(opened)}.db"),
            projections=[],
            broker="nats",
            bus_prefix=f"node-{uuid.uuid4().hex[:8]}",
            broker_options={"url": url},
        )
        assert isinstance(store.bus.broker, NatsBroker)
        opened.append(store)
        return store

    yield make
    for store in opened:
        bounded(store.close)


EVENTS = sample_events(200)
REACTIONS = sample_events(200, salt="reaction:")


def test_a_callback_that_appends(open_store: Callable[..., EventStore], wait_until: Wait) -> None:
    """Its append returns its offset; both records reach every subscriber once, in order."""
    store = open_store()
    reactor: list[int] = []
    watcher: list[int] = []
    returned: list[int] = []

    def react(record: RecordedEvent) -> None:
        reactor.append(record.offset)
        if record.offset < 9:  # a chain of reactions: each record's reaction is the next
            returned.append(store.append(REACTIONS[record.offset]))

    store.subscribe(react)
    store.subscribe(lambda record: watcher.append(record.offset))
    assert bounded(lambda: store.append(EVENTS[0])) == 0
    wait_until(lambda: len(watcher) >= 10 and len(reactor) >= 10, 30, "ten records")
    assert len(store) == 10
    assert reactor == watcher == list(range(10))
    assert returned == list(range(1, 10))


def test_a_slow_callback_holds_up_no_append(
    open_store: Callable[..., EventStore], wait_until: Wait
) -> None:
    store = open_store()
    busy, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(record: RecordedEvent) -> None:
        seen.append(record.offset)
        if record.offset == 0:
            busy.set()
            release.wait(DEADLOCK)

    store.subscribe(slow)
    store.append(EVENTS[0])
    assert busy.wait(DEADLOCK)
    try:
        assert bounded(lambda: store.append(EVENTS[1])) == 1
    finally:
        release.set()
    wait_until(lambda: len(seen) == 2, 30, "offset 1")
    assert seen == [0, 1]


def test_a_callback_that_subscribes(
    open_store: Callable[..., EventStore], wait_until: Wait
) -> None:
    """Live: from the next record committed; from an offset: caught up first, the records
    published behind the one in hand included; each once, in order."""
    store = open_store()
    made: dict[str, list[int]] = {"live": [], "from_0": [], "from_2": []}

    def subscribing(record: RecordedEvent) -> None:
        if record.offset == 1:
            store.subscribe(lambda r: made["live"].append(r.offset))
            store.subscribe(lambda r: made["from_0"].append(r.offset), from_offset=0)
            store.subscribe(lambda r: made["from_2"].append(r.offset), from_offset=2)

    subscription = store.subscribe(subscribing)
    bounded(lambda: store.append_batch(EVENTS[:4]))
    wait_until(lambda: subscription.next_offset == 4, 30, "the batch")
    bounded(lambda: store.append(EVENTS[4]))
    wait_until(lambda: len(made["from_2"]) == 3, 30, "offset 4")
    assert subscription.failure_count == 0, list(subscription.failures)
    assert made == {"live": [4], "from_0": [0, 1, 2, 3, 4], "from_2": [2, 3, 4]}


def test_a_catch_up_callback_that_waits_for_another_threads_append(
    open_store: Callable[..., EventStore], wait_until: Wait
) -> None:
    store = open_store()
    store.append_batch(EVENTS[:3])
    seen: list[int] = []

    def handing_off(record: RecordedEvent) -> None:
        seen.append(record.offset)
        if record.offset == 2:
            store.append(EVENTS[3])
        elif record.offset == 3:
            helper = threading.Thread(target=store.append, args=(EVENTS[4],), daemon=True)
            helper.start()
            helper.join(DEADLOCK)
            assert not helper.is_alive(), "the helper's append waited for the catch-up"

    subscription = bounded(lambda: store.subscribe(handing_off, from_offset=0))
    store.append(EVENTS[5])
    wait_until(lambda: len(seen) == 6, 30, "offset 5")
    assert subscription.failure_count == 0, list(subscription.failures)
    assert seen == [0, 1, 2, 3, 4, 5]


def test_a_callback_that_closes_subscriptions(
    open_store: Callable[..., EventStore], wait_until: Wait
) -> None:
    """Nothing reaches a subscription after a callback closed it. Each subscription has a
    NATS subscription of its own, fed in order but not in step with the others: the other
    one may be behind or ahead of the record in hand (ADR 0065, the NATS broker)."""
    store = open_store()
    own: list[int] = []
    other: list[int] = []
    witness: list[int] = []
    subscriptions: dict[str, Any] = {}
    at_close: list[int] = []

    def closing_self(record: RecordedEvent) -> None:
        own.append(record.offset)
        if record.offset == 1:
            subscriptions["own"].close()

    def closing_other(record: RecordedEvent) -> None:
        if record.offset == 2:
            subscriptions["other"].close()
            at_close.append(len(other))

    subscriptions["own"] = store.subscribe(closing_self)
    store.subscribe(closing_other)
    subscriptions["other"] = store.subscribe(lambda r: other.append(r.offset))
    store.subscribe(lambda r: witness.append(r.offset))
    bounded(lambda: store.append_batch(EVENTS[:5]))
    bounded(lambda: store.append(EVENTS[5]))
    wait_until(lambda: len(witness) == 6, 30, "the records")
    assert own == [0, 1]
    assert witness == [0, 1, 2, 3, 4, 5]
    assert at_close == [len(other)]
    assert other == list(range(len(other)))
    assert len(store.subscriptions) == 2


def test_a_callback_that_reads(open_store: Callable[..., EventStore], wait_until: Wait) -> None:
    store = open_store()
    read: list[int] = []

    def reading(record: RecordedEvent) -> None:
        read.append(len(list(store.read_range(0, record.offset + 1))))
        assert len(store) >= record.offset + 1

    subscription = store.subscribe(reading)
    bounded(lambda: store.append_batch(EVENTS[:4]))
    wait_until(lambda: len(read) == 4, 30, "the batch")
    assert read == [1, 2, 3, 4]
    assert subscription.failure_count == 0


def test_a_callback_that_closes_the_store(
    open_store: Callable[..., EventStore], wait_until: Wait
) -> None:
    """The append returns its offsets; nothing more reaches a subscription (the other one,
    not in step, may have had fewer or more records); the store and the broker's delivery
    thread end."""
    store = open_store()
    seen: list[int] = []
    others: list[int] = []
    at_close: list[int] = []

    def closing(record: RecordedEvent) -> None:
        seen.append(record.offset)
        store.close()
        at_close.append(len(others))

    store.subscribe(closing)
    store.subscribe(lambda r: others.append(r.offset))
    assert bounded(lambda: store.append_batch(EVENTS[:3])) == [0, 1, 2]
    wait_until(lambda: store.closed, 30, "the store to close")
    broker = store.bus.broker
    assert isinstance(broker, NatsBroker)
    wait_until(lambda: not broker._deliverer.is_alive(), 30, "the delivery thread to end")
    assert seen == [0]
    assert store.subscriptions == []
    assert at_close == [len(others)]
    assert others == list(range(len(others)))


def test_the_store_closed_while_a_callback_is_busy(open_store: Callable[..., EventStore]) -> None:
    """close() from another thread does not wait for the callback in hand (here it waits
    for the close to return: close() used to wait for the broker's delivery thread, up to
    5 s); what was queued behind it reaches no subscription; the thread ends after it."""
    store = open_store()
    busy, closed = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(record: RecordedEvent) -> None:
        seen.append(record.offset)
        busy.set()
        closed.wait(DEADLOCK)

    store.subscribe(slow)
    broker = store.bus.broker
    assert isinstance(broker, NatsBroker)
    deliverer = broker._deliverer
    waited: list[float | None] = []
    join = deliverer.join
    deliverer.join = lambda timeout=None: (waited.append(timeout), join(timeout))[-1]  # type: ignore[method-assign,func-returns-value]
    store.append(EVENTS[0])
    assert busy.wait(DEADLOCK)
    bounded(lambda: store.append(EVENTS[1]))

    def close() -> None:
        store.close()
        closed.set()

    bounded(close)
    assert waited == [], "close() waited for the callback in hand"
    join(DEADLOCK)
    assert not deliverer.is_alive()
    assert seen == [0]


def test_threads_append_while_subscriptions_come_and_go(
    open_store: Callable[..., EventStore],
) -> None:
    """4 threads append (group commit), a reacting subscriber appends on every 10th record,
    subscriptions from a past offset or live are made and closed meanwhile: every one gets
    its records once, in order, with no gap."""
    store = open_store()
    threads_, per_thread = 4, 30
    reactor: list[int] = []
    everything: list[int] = []

    def react(record: RecordedEvent) -> None:
        reactor.append(record.offset)
        if record.offset % 10 == 0:
            store.append(sample_events(1, start=record.offset, salt="reaction:")[0])

    store.subscribe(react, from_offset=0)
    store.subscribe(lambda r: everything.append(r.offset), from_offset=0)
    churned: list[tuple[int | None, list[int]]] = []
    stop = threading.Event()

    def churn() -> None:
        round_ = 0
        while not stop.is_set() or round_ < 3:
            got: list[int] = []
            start = len(store) // 2 if round_ % 2 == 0 else None
            subscription = store.subscribe(
                lambda r, got=got: got.append(r.offset),  # type: ignore[misc]
                from_offset=start,
            )
            churned.append((start, got))
            stop.wait(0.005)
            subscription.close()
            round_ += 1

    barrier = threading.Barrier(threads_)

    def append(number: int) -> None:
        barrier.wait(DEADLOCK)
        for event in sample_events(per_thread, salt=f"thread-{number}:"):
            store.append(event)

    workers = [threading.Thread(target=append, args=(n,), daemon=True) for n in range(threads_)]
    churner = threading.Thread(target=churn, daemon=True)
    for thread in [*workers, churner]:
        thread.start()
    for thread in workers:
        thread.join(DEADLOCK * 3)
        assert not thread.is_alive(), "an appending thread never returned"
    stop.set()
    churner.join(DEADLOCK)
    assert not churner.is_alive(), "the churning thread never returned"

    def settled() -> bool:
        total = len(store)
        return (
            len(everything) == total
            and len(reactor) == total
            and (total == threads_ * per_thread + len(range(0, total, 10)))
        )

    deadline = threading.Event()
    for _ in range(600):
        if settled():
            break
        deadline.wait(0.05)
    total = len(store)
    assert total == threads_ * per_thread + len(range(0, total, 10))
    assert everything == list(range(total)) == reactor
    for start, got in churned:
        if got:
            first = got[0] if start is None else start
            assert got == list(range(first, first + len(got)))


def test_nats_stopped_while_a_callback_appends(
    open_store: Callable[..., EventStore], private_server: Any, wait_until: Wait
) -> None:
    """A callback stops NATS (a private server) and appends: the append commits and
    returns; so does another thread's meanwhile. Once NATS is back, each subscriber gets
    every record once, in order: what live delivery lost is filled from the log when the
    next record arrives."""
    store = open_store(private_server.url)
    broker = store.bus.broker
    assert isinstance(broker, NatsBroker)
    reactor: list[int] = []
    watcher: list[int] = []
    returned: list[int] = []

    def react(record: RecordedEvent) -> None:
        reactor.append(record.offset)
        if record.offset == 0:
            private_server.stop()
            returned.append(store.append(REACTIONS[0]))

    reacting = store.subscribe(react)
    store.subscribe(lambda record: watcher.append(record.offset))
    store.append(EVENTS[0])
    wait_until(lambda: returned == [1], 30, "the callback's append")
    assert bounded(lambda: store.append(EVENTS[1])) == 2
    private_server.start()
    wait_until(broker._thread.connected.is_set, 30, "the broker to reconnect")
    assert bounded(lambda: store.append(EVENTS[2])) == 3
    wait_until(lambda: len(watcher) >= 4 and len(reactor) >= 4, 30, "offsets 1..3")
    assert reactor == watcher == [0, 1, 2, 3]
    assert reacting.failure_count == 0


def test_a_subscribe_waiting_on_nats_does_not_hold_up_appends(
    open_store: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch, wait_until: Wait
) -> None:
    """The NATS subscribe round trip (up to its 10 s timeout while the server does not
    answer) is made outside the store's append lock: another thread's append commits and
    returns while a subscribe still waits on NATS. The live subscription then gets what
    was committed meanwhile and after, once each, in order."""
    store = open_store()
    broker = store.bus.broker
    assert isinstance(broker, NatsBroker)
    inside, answer = threading.Event(), threading.Event()
    subscribe = broker.subscribe

    def slow(receiver: Any) -> Any:  # a server slow to answer
        inside.set()
        answer.wait(DEADLOCK)
        return subscribe(receiver)

    monkeypatch.setattr(broker, "subscribe", slow)
    got: list[int] = []
    subscribing = threading.Thread(
        target=lambda: store.subscribe(lambda record: got.append(record.offset)), daemon=True
    )
    subscribing.start()
    assert inside.wait(DEADLOCK)
    appended: list[int] = []
    appending = threading.Thread(target=lambda: appended.append(store.append(EVENTS[0])))
    appending.start()
    appending.join(5)  # a bound for the failure: on success it returns at once
    answered_late = appending.is_alive()
    answer.set()
    appending.join(DEADLOCK)
    subscribing.join(DEADLOCK)
    assert not subscribing.is_alive()
    assert not answered_late, "the append waited for the subscribe's round trip"
    assert appended == [0]
    assert bounded(lambda: store.append(EVENTS[1])) == 1
    wait_until(lambda: len(got) >= 2, 30, "offsets 0 and 1")
    assert got == [0, 1]
