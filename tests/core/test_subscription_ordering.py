"""Every subscriber sees every committed record once, in offset order, from where it
subscribed, with no gap between its catch-up and live delivery: while 8 threads append
through group commit on durable SQLite, while subscriptions are made and closed
concurrently, while a callback appends, and on a SQLite file that other processes append
to (ADR 0065). PostgreSQL's shared schema: plugins/chanlog-postgres/tests."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from chanlog import EventStore, RecordedEvent
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing.events import sample_events

THREADS = 8
PER_THREAD = 40
DEADLINE = 60.0  # seconds: a bound for a thread or process, not a timing claim

CHILD = """
import sys
from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing.events import sample_events

with EventStore(SqliteBackend(sys.argv[1], durability="normal"), projections=[]) as store:
    for event in sample_events(int(sys.argv[2]), salt=sys.argv[3]):
        store.append(event)
"""


class Recorder:
    """A callback that keeps the offsets it is handed, and the subscription's start."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.start: int | None = None

    def __call__(self, record: RecordedEvent) -> None:
        self.offsets.append(record.offset)

    def check(self, end: int | None = None) -> None:
        """Once each, in order, from its start, with no gap (up to ``end`` when given)."""
        if not self.offsets:
            return
        first = self.offsets[0] if self.start is None else self.start
        expected = list(range(first, first + len(self.offsets)))
        assert self.offsets == expected, f"from {first}: {self.offsets[:5]}..."
        if end is not None:
            assert self.offsets[-1] == end - 1


def _reacting(store: EventStore) -> Recorder:
    """A subscriber that appends a reaction to every 10th record (a node reacting)."""
    recorder = Recorder()

    def react(record: RecordedEvent) -> None:
        recorder(record)
        if record.offset % 10 == 0:
            store.append(sample_events(1, start=record.offset, salt="reaction:")[0])

    store.subscribe(react, from_offset=0)
    recorder.start = 0
    recorder.react = react  # type: ignore[attr-defined]
    return recorder


def _churn(store: EventStore, stop: threading.Event, made: list[Recorder]) -> None:
    """Subscribe from a past offset (or live), let a few records pass, close; again."""
    round_ = 0
    while not stop.is_set() or round_ < 3:
        recorder = Recorder()
        start = len(store) // 2 if round_ % 2 == 0 else None
        subscription = store.subscribe(recorder, from_offset=start)
        recorder.start = start if start is not None else None
        made.append(recorder)
        if round_ % 3 == 0:
            stop.wait(0.001)
        subscription.close()
        round_ += 1


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "a thread never returned (deadlock?)"


def test_eight_threads_on_durable_sqlite_with_subscriptions_coming_and_going(
    tmp_path: Path,
) -> None:
    with EventStore(SqliteBackend(tmp_path / "log.db", durability="full"), projections=[]) as store:
        reactor = _reacting(store)
        everything = Recorder()
        store.subscribe(everything)
        everything.start = 0
        churned: list[Recorder] = []
        stop = threading.Event()
        barrier = threading.Barrier(THREADS)

        def append(thread: int) -> None:
            barrier.wait(DEADLINE)
            for event in sample_events(PER_THREAD, salt=f"thread-{thread}:"):
                store.append(event)

        threads = [threading.Thread(target=append, args=(n,), daemon=True) for n in range(THREADS)]
        churner = threading.Thread(target=_churn, args=(store, stop, churned), daemon=True)
        for thread in [*threads, churner]:
            thread.start()
        _join(threads)
        stop.set()
        _join([churner])
        total = len(store)
        assert total == THREADS * PER_THREAD + len(range(0, total, 10))  # every reaction
        everything.check(total)
        reactor.check(total)
        assert len(churned) >= 3
        for recorder in churned:
            recorder.check()


def test_three_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    """Two other processes append while this one appends from its threads and reacts:
    its subscribers get their records through the watcher, in the same order."""
    path = tmp_path / "shared.db"
    per_child = 150
    with EventStore(SqliteBackend(path, durability="normal"), projections=[]) as store:
        reactor = _reacting(store)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(path), str(per_child), f"child-{n}:"]
            )
            for n in range(2)
        ]
        mine = [
            threading.Thread(
                target=lambda n=n: [
                    store.append(e) for e in sample_events(per_child // 3, salt=f"own-{n}:")
                ],
                daemon=True,
            )
            for n in range(3)
        ]
        for thread in mine:
            thread.start()
        late = Recorder()
        store.subscribe(late, from_offset=0)
        late.start = 0
        for child in children:
            assert child.wait(DEADLINE) == 0
        _join(mine)
        # Fold and deliver whatever the watcher has not yet (refresh() is what it calls).
        while store.refresh() != len(store):
            pass
        store.refresh()
        total = len(store)
        assert total >= 2 * per_child + 3 * (per_child // 3)
        late.check(total)
        reactor.check(total)
        assert {record.offset for record in store.read_from(0)} == set(range(total))


def test_a_failed_write_notifies_only_what_committed() -> None:
    """A write refused at its commit notifies nobody; one that committed although it was
    reported failed (ADR 0042) notifies everybody, once, as soon as the store knows."""
    import pytest

    from chanlog.errors import StorageError
    from chanlog.testing import FlakyBackend

    backend = FlakyBackend()
    with EventStore(backend, projections=[]) as store:
        seen = Recorder()
        store.subscribe(seen)
        events = sample_events(4)
        backend.fail_writes(1, at="commit")
        with pytest.raises(StorageError):
            store.append(events[0])
        assert seen.offsets == [] and len(store) == 0
        backend.fail_writes(1, at="acknowledgement")
        with pytest.raises(StorageError):
            store.append_batch(events[:2])
        assert seen.offsets == [0, 1] and len(store) == 2
        assert store.append(events[0]) == 0  # landed: an idempotent re-append
        store.append(events[2])
        assert seen.offsets == [0, 1, 2]
