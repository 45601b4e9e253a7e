"""Many threads: dense offsets, exactly-once in-order delivery, catch-up without gaps."""

from __future__ import annotations

import threading
from collections.abc import Callable

from chanlog import EventStore, RecordedEvent, StateSigned
from chanlog_samples import make_signed

THREADS = 10
PER_THREAD = 1000


def _channel(thread: int) -> str:
    return "0x" + f"{thread + 1:02x}" * 32


def _run_writers(store: EventStore, results: list[list[int]], batch: int = 1) -> None:
    start = threading.Barrier(THREADS)

    def writer(thread: int) -> None:
        events = [make_signed(turn, _channel(thread)) for turn in range(PER_THREAD)]
        start.wait()
        offsets: list[int] = []
        for first in range(0, PER_THREAD, batch):
            chunk = events[first : first + batch]
            if batch == 1:
                offsets.append(store.append(chunk[0]))
            else:
                offsets.extend(store.append_batch(chunk))
        results[thread] = offsets

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _assert_dense_and_ordered(store: EventStore, results: list[list[int]]) -> None:
    returned = [offset for offsets in results for offset in offsets]
    assert len(returned) == THREADS * PER_THREAD
    assert len(set(returned)) == len(returned)  # no duplicate
    assert [r.offset for r in store] == list(range(len(store)))  # dense
    extra = set(range(len(store))) - set(returned)
    # Anything the writers did not append themselves can only be the store's own snapshots.
    assert all(next(store.read_range(o, o + 1)).event_type == "snapshot-created" for o in extra)
    for thread, offsets in enumerate(results):
        assert offsets == sorted(offsets)  # each writer's events keep its order
        turns = [r.event.turn_num for r in store.read_stream(_channel(thread))]  # type: ignore[attr-defined]
        assert turns == list(range(PER_THREAD))


def test_ten_threads_times_thousand_appends() -> None:
    store = EventStore(projections=[])
    seen_a: list[int] = []
    seen_b: list[int] = []
    store.subscribe(lambda r: seen_a.append(r.offset))
    store.subscribe(lambda r: seen_b.append(r.offset))
    results: list[list[int]] = [[] for _ in range(THREADS)]
    _run_writers(store, results)
    _assert_dense_and_ordered(store, results)
    everything = list(range(len(store)))
    assert seen_a == everything  # every event exactly once, in offset order
    assert seen_b == everything
    store.verify()


def test_ten_threads_batched() -> None:
    store = EventStore(projections=[])
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset))
    results: list[list[int]] = [[] for _ in range(THREADS)]
    _run_writers(store, results, batch=50)
    _assert_dense_and_ordered(store, results)
    assert seen == list(range(len(store)))


def test_catch_up_subscription_while_others_append() -> None:
    store = EventStore(projections=[])
    store.append_batch([make_signed(t, "0x" + "ee" * 32) for t in range(500)])
    results: list[list[int]] = [[] for _ in range(THREADS)]
    subscribers: list[list[int]] = []
    subscribed = threading.Event()

    def late_subscriber() -> None:
        # Subscribe from offset 0 while the writers are running.
        while len(store) < 3000:
            pass
        seen: list[int] = []
        subscribers.append(seen)
        store.subscribe(lambda r: seen.append(r.offset), from_offset=0)
        mid: list[int] = []
        subscribers.append(mid)
        store.subscribe(lambda r: mid.append(r.offset), from_offset=1234)
        subscribed.set()

    helper = threading.Thread(target=late_subscriber)
    helper.start()
    _run_writers(store, results)
    helper.join()
    assert subscribed.is_set()
    assert subscribers[0] == list(range(len(store)))  # no gap, no duplicate, in order
    assert subscribers[1] == list(range(1234, len(store)))


def test_subscriber_appending_from_its_callback_keeps_order() -> None:
    store = EventStore(projections=[])
    seen: list[int] = []
    follow_ups: list[int] = []

    def reacting(record: RecordedEvent) -> None:
        event = record.event
        assert isinstance(event, StateSigned)
        if event.turn_num < 5 and event.channel_id == make_signed(0).channel_id:
            follow_ups.append(store.append(make_signed(event.turn_num + 100)))

    store.subscribe(reacting)
    store.subscribe(lambda r: seen.append(r.offset))
    store.append(make_signed(0))
    for turn in range(1, 5):
        store.append(make_signed(turn))
    assert seen == list(range(len(store)))
    assert len(follow_ups) == 5


def test_subscription_delivery_under_concurrent_subscribe_and_close() -> None:
    store = EventStore(projections=[])
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            while not stop.is_set():
                seen: list[int] = []

                def record(r: RecordedEvent, seen: list[int] = seen) -> None:
                    seen.append(r.offset)

                sub = store.subscribe(record, from_offset=0)
                sub.close()
                assert seen == list(range(len(seen)))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    churner = threading.Thread(target=churn)
    churner.start()
    appended: Callable[[int], int] = lambda t: store.append(make_signed(t))  # noqa: E731
    for turn in range(2000):
        appended(turn)
    stop.set()
    churner.join()
    assert failures == []


def test_readers_never_block_the_memory_backend_from_growing() -> None:
    # Readers copy out of the packed chain-hash column while writers grow it; a reader that
    # pinned the buffer would make a concurrent append fail with BufferError.
    store = EventStore(projections=[])
    store.append(make_signed(0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for _ in store.read_from(0):
                    pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for turn in range(1, 3000):
            store.append(make_signed(turn))
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == []
    assert len(store) == 3000
