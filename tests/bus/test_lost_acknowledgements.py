"""A consumer's commit that the storage reports as failed although it landed (a connection
lost as the database committed): the runner settles it from the stored position, so no
record is handed over twice, no handler's appends are made twice and nothing is counted
twice (ADR 0042). FlakyBackend's ``at="acknowledgement"`` commits, then raises."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import chanlog
from bus.conftest import until
from chanlog.errors import StorageError
from chanlog.events import MessageSent, ObjectiveCreated
from chanlog.records import PositionMove, RecordedEvent
from chanlog.testing import FlakyBackend

FAST = {"backoff": [0.0], "lease_ttl": 5.0, "max_deliver": 1}
OBJECTIVES = ["0x" + f"{index:02x}" * 32 for index in range(1, 5)]


@pytest.fixture
def run_in_thread() -> Iterator[Callable[[Any], threading.Event]]:
    """Runs a runner in a thread; stops and joins it when the test ends."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(runner: Any) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        started.append((stop, thread))
        return stop

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(10)


def _created_objectives(store: chanlog.EventStore) -> None:
    for objective in OBJECTIVES:
        store.append(ObjectiveCreated(objective_id=objective, objective_type="DirectFund"))


class Messenger:
    """Sends a message for every objective created, as a node's engine would: the event
    carries the time it was made, so a second call for one record makes a different
    event (a second message), not a redelivery the log would recognise."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.made = 0

    def __call__(self, record: RecordedEvent) -> list[chanlog.Event] | None:
        self.calls.append(record.offset)
        created = record.event
        if not isinstance(created, ObjectiveCreated):
            return None
        self.made += 1
        return [
            MessageSent(
                message_id="0x" + f"{self.made:064x}",
                objective_id=created.objective_id,
                peer_id="peer-1",
            )
        ]


class Node:
    """A store whose four objectives a messenger consumer is about to handle."""

    def __init__(self, backend: FlakyBackend, store: chanlog.EventStore) -> None:
        self.backend = backend
        self.store = store
        self.stored = backend.consumer_state  # the backend's own, whatever a test replaces
        self.messenger = Messenger()
        self.runner = store.bus.consumer(
            "messenger", self.messenger, subjects=["chanlog.objective.>"], **FAST
        )

    def run_until_handled(self, run_in_thread: Callable[[Any], threading.Event]) -> None:
        """Run the consumer until it has handled the four objectives and its messages."""
        run_in_thread(self.runner)
        until(lambda: self.stored("messenger").position == len(self.store) == 8)  # type: ignore[union-attr]

    def messages(self) -> list[str]:
        """The objective of each message the log holds, in order."""
        return [r.event.objective_id for r in self.store if isinstance(r.event, MessageSent)]


@pytest.fixture
def node() -> Iterator[Node]:
    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        _created_objectives(store)
        yield Node(backend, store)


def test_a_handlers_commit_that_landed_unacknowledged_runs_the_handler_once(
    node: Node, run_in_thread: Callable[[Any], threading.Event]
) -> None:
    node.backend.fail_writes(2, at="acknowledgement")  # the first two: landed, "failed"
    node.run_until_handled(run_in_thread)
    assert node.messenger.calls == [0, 1, 2, 3]  # each record once, though two commits "failed"
    assert node.messages() == OBJECTIVES  # one message per objective, not two
    assert node.backend.failed_writes == 2
    assert node.runner.stats.failures == 0
    assert node.store.bus.consumers.parked("messenger") == []
    assert node.store.bus.consumers.state("messenger").handled == 4


def test_while_the_storage_cannot_tell_the_runner_waits_and_asks_again(
    node: Node,
    run_in_thread: Callable[[Any], threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = {"count": 0}
    consumer_state = node.backend.consumer_state

    def cannot_tell_three_times(name: str) -> Any:
        asked["count"] += 1
        if asked["count"] <= 3:
            raise StorageError("the database is restarting")
        return consumer_state(name)

    node.backend.fail_writes(1, at="acknowledgement")
    monkeypatch.setattr(node.backend, "consumer_state", cannot_tell_three_times)
    node.run_until_handled(run_in_thread)
    assert asked["count"] >= 4
    assert node.messenger.calls == [0, 1, 2, 3]
    assert node.runner.stats.failures == 0
    assert (node.runner.stats.last_error or "").startswith("StorageError")


def test_a_commit_that_did_not_land_hands_the_record_over_again(
    node: Node, run_in_thread: Callable[[Any], threading.Event]
) -> None:
    node.backend.fail_writes(1, at="commit")  # refused and rolled back: it did not land
    node.run_until_handled(run_in_thread)
    assert node.messenger.calls == [0, 0, 1, 2, 3]
    assert node.messages() == OBJECTIVES


def test_a_position_move_that_landed_unacknowledged_is_not_counted_twice(
    run_in_thread: Callable[[Any], threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        _created_objectives(store)
        seen: list[int] = []
        runner = store.bus.consumer("audit", lambda record: seen.append(record.offset), **FAST)
        move_consumer = backend.move_consumer
        lost = {"left": 1}

        def lose_the_acknowledgement(move: PositionMove) -> None:
            move_consumer(move)
            if lost["left"]:
                lost["left"] -= 1
                raise StorageError("the connection dropped as the server committed")

        monkeypatch.setattr(backend, "move_consumer", lose_the_acknowledgement)
        run_in_thread(runner)
        until(lambda: lost["left"] == 0 and store.bus.consumers.state("audit").position == 4)
        store.append(ObjectiveCreated(objective_id="0x" + "99" * 32, objective_type="DirectFund"))
        until(lambda: store.bus.consumers.state("audit").position == 5)
        assert seen == [0, 1, 2, 3, 4]
        assert store.bus.consumers.state("audit").handled == 5  # not 9


def test_the_store_takes_in_an_append_that_landed_unacknowledged() -> None:
    """At once: its length, its state and its subscribers agree with the log, and
    appending the event again returns its offset."""
    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        delivered: list[int] = []
        store.subscribe(lambda record: delivered.append(record.offset))
        store.append(ObjectiveCreated(objective_id=OBJECTIVES[0], objective_type="DirectFund"))
        landed = ObjectiveCreated(objective_id=OBJECTIVES[1], objective_type="DirectFund")
        backend.fail_writes(1, at="acknowledgement")
        with pytest.raises(StorageError):
            store.append(landed)
        assert len(store) == 2
        assert store.state("objective", OBJECTIVES[1]) is not None
        assert delivered == [0, 1]
        assert store.append(landed) == 1  # idempotent: the caller's retry finds it
        assert delivered == [0, 1]
        with chanlog.EventStore(backend) as replayed:
            assert replayed.state("objective", OBJECTIVES[1]) == store.state(
                "objective", OBJECTIVES[1]
            )


def test_grouped_appends_that_landed_unacknowledged_are_each_found_again() -> None:
    backend = FlakyBackend()
    events = [
        ObjectiveCreated(objective_id="0x" + f"{index:064x}", objective_type="DirectFund")
        for index in range(1, 65)
    ]
    with chanlog.EventStore(backend) as store:
        delivered: list[int] = []
        store.subscribe(lambda record: delivered.append(record.offset))
        backend.fail_writes(3, at="acknowledgement")
        offsets: dict[int, int] = {}
        refused: list[int] = []
        lock = threading.Lock()

        def append(index: int) -> None:
            while True:  # the caller's retries
                try:
                    offset = store.append(events[index])
                    break
                except StorageError:
                    with lock:
                        refused.append(index)
            with lock:
                offsets[index] = offset

        def append_every_eighth(start: int) -> None:
            for index in range(start, 64, 8):
                append(index)

        threads = [
            threading.Thread(target=append_every_eighth, args=(start,)) for start in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert refused  # some appends were told they failed...
        assert len(store) == 64  # ...and every event is in the log once
        assert {record.event_id: record.offset for record in store} == {
            events[index].event_id: offset for index, offset in offsets.items()
        }
        assert delivered == list(range(64))
        assert store.verify() == 64


def test_when_the_head_cannot_be_read_the_next_write_takes_in_what_landed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = FlakyBackend()
    with chanlog.EventStore(backend) as store:
        store.append(ObjectiveCreated(objective_id=OBJECTIVES[0], objective_type="DirectFund"))
        head = backend.head

        def unreadable() -> Any:
            raise StorageError("the server went away")

        monkeypatch.setattr(backend, "head", unreadable)
        backend.fail_writes(1, at="acknowledgement")
        landed = ObjectiveCreated(objective_id=OBJECTIVES[1], objective_type="DirectFund")
        with pytest.raises(StorageError, match=r"^the database is restarting"):
            store.append(landed)  # the write's own error, not the head's
        monkeypatch.setattr(backend, "head", head)
        assert store.append(landed) == 1
        assert (
            store.append(ObjectiveCreated(objective_id=OBJECTIVES[2], objective_type="DirectFund"))
            == 2
        )
        assert store.verify() == 3


class _GroupingFlaky(FlakyBackend):
    """Group commit (ADR 0029) over a backend that fails on demand."""

    groups_commits = True


@pytest.mark.parametrize("backend_class", [FlakyBackend, _GroupingFlaky])
def test_a_write_that_failed_before_its_transaction_opened_is_not_reconciled(
    backend_class: type[FlakyBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing can have landed: no head is read, so a caller during an outage waits for its
    write's own failure only (on PostgreSQL a head read then waits pool_timeout again)."""
    backend = backend_class()
    with chanlog.EventStore(backend) as store:
        store.append(ObjectiveCreated(objective_id=OBJECTIVES[0], objective_type="DirectFund"))
        heads: list[int] = []
        head = backend.head

        def counted() -> Any:
            heads.append(1)
            return head()

        monkeypatch.setattr(backend, "head", counted)
        events = [
            ObjectiveCreated(objective_id=objective, objective_type="DirectFund")
            for objective in OBJECTIVES[1:]
        ]
        backend.fail_writes(len(events), at="begin")
        outcomes: list[Any] = []

        def append(event: Any) -> None:
            try:
                outcomes.append(store.append(event))
            except StorageError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=append, args=(event,)) for event in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(isinstance(outcome, StorageError) for outcome in outcomes)
        assert heads == []
        backend.fail_writes(1, at="commit")
        with pytest.raises(StorageError):
            store.append(events[0])
        assert heads == [1]  # a commit that failed may have landed: the head is read
