"""Storage faults at every write a durable consumer's machinery makes to its store, and the
promises each must keep (DESIGN section 10): no record skipped, each handed over at least
once, none counted twice in ``handled``, the runner going on (or stopping with an error that
says what failed), the lease given up, and ``chanlog consumers`` showing what stands.

Shared by ``tests/bus/test_consumer_faults.py`` (memory, SQLite) and the PostgreSQL plugin's
``test_consumer_faults.py``. A :class:`Node` is a store holding :data:`RECORDS` records, a
:class:`~chanlog.testing.ConsumerWriteFaults` on its backend (the plain consumer writes) and
a wrapper of its write transactions (a handler's appends with the move). The runner is driven
step by step in the test's thread (``run_once``, ``flush``, ``close``: no thread, no sleep);
its lease is long, so no heartbeat beats unless a test makes one beat (``beat``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import chanlog
from bus.conftest import until
from chanlog.bus.runner import ConsumerRunner
from chanlog.errors import LeaseHeld, NotFound, StorageError
from chanlog.events import MessageAcked, MessageReceived, ObjectiveCreated
from chanlog.events.base import Event
from chanlog.records import PositionMove, RecordedEvent
from chanlog.testing import ConsumerWriteFaults
from chanlog.testing.events import bytes32_of
from chanlog.testing.flaky import ConsumerWrite, WriteStage

NAME = "faulty"
RECORDS = 12
PARKED = 4  # the handler always fails this offset: parked after MAX_DELIVER tries
ANSWERED = 7  # the handler answers this message received with an ack (appends)
MAX_DELIVER = 2
MOST_STEPS = 40  # run_once calls a drain may take: more means the runner spins
SETTINGS: dict[str, Any] = {
    "max_deliver": MAX_DELIVER,
    "backoff": [0.0],
    "commit_every": 3,
    "commit_interval": 3600.0,  # commits by count only
    "lease_ttl": 600.0,  # no heartbeat during a test but the beats it makes
    "batch_size": 5,
}


def events() -> list[Event]:
    """``RECORDS`` events: objectives created, and a message received at :data:`ANSWERED`."""
    made: list[Event] = []
    for number in range(RECORDS):
        if number == ANSWERED:
            made.append(
                MessageReceived(
                    message_id=bytes32_of(f"message:{number}"),
                    peer_id="peer-1",
                    objective_id=bytes32_of("objective:0"),
                    timestamp_ms=number,
                )
            )
        else:
            made.append(
                ObjectiveCreated(
                    objective_id=bytes32_of(f"objective:{number}"),
                    objective_type="DirectFund",
                    timestamp_ms=number,
                )
            )
    return made


class Handler:
    """Records every call; fails :data:`PARKED` always (until healed), answers
    :data:`ANSWERED` with an ack, whose timestamp differs at each call (a second call makes a
    second ack, as a node's engine would)."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.handled: list[int] = []  # calls that returned
        self.broken = {PARKED}
        self.transient: dict[int, int] = {}  # offset -> failures before it succeeds
        self.during: dict[int, Callable[[], None]] = {}  # offset -> run inside its next call

    def __call__(self, record: RecordedEvent) -> list[Event] | None:
        offset = record.offset
        self.calls.append(offset)
        if offset in self.during:
            self.during.pop(offset)()
        if offset in self.broken:
            raise RuntimeError(f"cannot handle {offset}")
        if self.transient.get(offset, 0) > 0:
            self.transient[offset] -= 1
            raise RuntimeError(f"not yet: {offset}")
        self.handled.append(offset)
        if offset == ANSWERED:
            return [
                MessageAcked(
                    message_id=bytes32_of(f"message:{offset}"),
                    peer_id="peer-1",
                    roundtrip_ms=len(self.calls),
                )
            ]
        return None


class TransactionFaults:
    """Failures armed at a backend's write transactions (a handler's appends committed with
    the consumer's move), at ``"begin"``, ``"commit"`` (rolled back) or
    ``"acknowledgement"`` (committed, then reported failed), and at its reads of the log;
    wrapped on the instance."""

    def __init__(self, backend: Any) -> None:
        self._write = backend.write
        self._read = backend.read
        self.count = 0
        self.stage: WriteStage = "begin"
        self.reading = True  # False: every read of the log fails
        backend.write = self._writing
        backend.read = self._reading

    def _reading(self, start: int, end: int) -> Any:
        if not self.reading:
            raise StorageError("the database cannot read the log")
        return self._read(start, end)

    def fail(self, count: int, at: WriteStage) -> None:
        self.count, self.stage = count, at

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        stage: WriteStage | None = None
        if self.count > 0:
            self.count -= 1
            stage = self.stage
        if stage == "begin":
            raise StorageError("the database is restarting (write, begin)")
        with self._write() as transaction:
            yield transaction
            if stage == "commit":
                raise StorageError("the database is restarting (write, commit)")  # rolls back
        if stage == "acknowledgement":
            raise StorageError("the database is restarting (write, acknowledgement)")


class Node:
    """A store of :data:`RECORDS` records, faults armed at its consumer writes and write
    transactions, and one consumer's runner over it."""

    def __init__(self, store: chanlog.EventStore) -> None:
        self.store = store
        self.backend: Any = store.backend
        self.faults = ConsumerWriteFaults(self.backend)
        self.transactions = TransactionFaults(self.backend)
        store.append_batch(events())
        self.handler = Handler()
        self.runner = self.new_runner()
        self.errors: list[StorageError] = []

    def new_runner(self, **settings: Any) -> ConsumerRunner:
        return self.store.bus.consumer(NAME, self.handler, **{**SETTINGS, **settings})

    def state(self) -> Any:
        return self.store.bus.consumers.state(NAME)

    def info(self) -> dict[str, object]:
        """What ``chanlog consumers --json`` shows of the consumer (``{}`` before it exists)."""
        try:
            return self.store.bus.consumers.info(NAME).as_dict()
        except NotFound:
            return {}

    def step(self, operation: Callable[[], object]) -> bool:
        """Run ``operation``; True when it went through, False when it raised a
        StorageError (kept in :attr:`errors`)."""
        try:
            operation()
        except StorageError as error:
            self.errors.append(error)
            return False
        return True

    def drain(self, runner: ConsumerRunner | None = None) -> None:
        """Step ``runner`` (this node's by default) until it has handled the whole log and
        committed it, as ``run()`` would with its retries; at most :data:`MOST_STEPS` steps
        (more means it spins)."""
        runner = runner or self.runner
        for _ in range(MOST_STEPS):
            if self.step(runner.run_once) and self.step(runner.flush):
                state = self.state()
                if state.position == len(self.store) and not runner.run_once():
                    return
        raise AssertionError(f"the runner did not drain in {MOST_STEPS} steps: {self.errors}")

    def beat(self, runner: ConsumerRunner | None = None) -> None:
        """One beat of the runner's lease heartbeat, in this thread: the renewal, then what
        stands written as the last error."""
        runner = runner or self.runner
        runner._lease.beat(runner._record_failure)

    def check(self, *, parked: set[int] | None = None) -> None:
        """The promises, once the runner has handled the whole log and committed it:
        nothing skipped (each record below the position was handled or is parked), each
        handed over at least once, each handling counted once, and the last error the
        parked record's."""
        parked = {PARKED} if parked is None else parked
        state = self.state()
        assert state.position == len(self.store) >= RECORDS
        rows = self.store.bus.consumers.parked(NAME)
        assert {row.offset for row in rows} == parked
        handled = set(self.handler.handled)
        for offset in range(RECORDS):
            assert offset in self.handler.calls, f"offset {offset} was never handed over"
            assert offset in handled or offset in parked, f"offset {offset} skipped"
        # A handling whose commit did not land is not counted: the record is handed over
        # again and counted then. So each record handled is counted once, whatever failed.
        assert state.handled == len(handled), (
            f"handled {state.handled}, {len(handled)} records handled ({self.handler.handled})"
        )
        acks = [r for r in self.store if r.event_type == "message-acked"]
        assert len(acks) == 1, f"the answered record's ack was made {len(acks)} times"
        errors = {row.error for row in rows}
        assert (state.last_error in errors) if errors else state.last_error is None, (
            state.last_error
        )
        assert all(error.startswith(f"offset {PARKED}: RuntimeError") for error in errors)

    def check_released(self) -> None:
        assert self.state().lease_holder is None, "the lease is left held"


def plain_commit(move: PositionMove) -> bool:
    """A runner's plain position commit of handled records (nothing parked)."""
    return move.handled > 0 and not move.parked and not move.unparked


def park(move: PositionMove) -> bool:
    """A runner's move that parks a record."""
    return bool(move.parked)


def error_only(move: PositionMove) -> bool:
    """The heartbeat's move: a last error, nothing counted."""
    return move.error is not None and not move.handled and not move.parked


STAGES = ("begin", "commit", "acknowledgement")


# -- the cases -------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_a_plain_position_commit_that_fails(node: Node, stage: WriteStage) -> None:
    """The runner's commit of handled records fails: it is retried, landed or not, and
    settled by the stored position when it landed (ADR 0042)."""
    node.faults.fail(1, writes=["move"], at=stage, matching=plain_commit)
    node.drain()
    assert node.faults.failed == ["move"] and len(node.errors) == 1
    node.check()
    assert node.handler.calls.count(0) == 1  # kept pending, or settled: not handed again


@pytest.mark.parametrize("stage", STAGES)
def test_a_park_whose_commit_fails(node: Node, stage: WriteStage) -> None:
    node.faults.fail(1, writes=["move"], at=stage, matching=park)
    node.drain()
    assert node.faults.failed == ["move"]
    node.check()
    assert node.handler.calls.count(PARKED) == MAX_DELIVER  # parked once, not tried again
    assert node.state().parked == 1
    assert node.info()["last_error"] == node.store.bus.consumers.parked(NAME)[0].error


@pytest.mark.parametrize("stage", STAGES)
def test_a_handlers_appends_whose_commit_fails(node: Node, stage: WriteStage) -> None:
    node.transactions.fail(1, stage)
    node.drain()
    # Landed: settled by the stored position at once, nothing raised (ADR 0042).
    assert len(node.errors) == (0 if stage == "acknowledgement" else 1)
    node.check()  # one ack, counted once
    assert node.handler.calls.count(ANSWERED) == (1 if stage == "acknowledgement" else 2)


@pytest.mark.parametrize("write", ["ensure", "acquire"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_start_whose_write_fails(node: Node, write: ConsumerWrite, stage: WriteStage) -> None:
    """Registering the consumer or taking its lease fails: the next start goes on."""
    node.faults.fail(1, writes=[write], at=stage)
    assert not node.step(node.runner.start)
    assert not node.runner.started
    node.drain()
    node.check()
    node.runner.close()
    node.check_released()


@pytest.mark.parametrize("stage", STAGES)
def test_a_runner_that_stops_after_a_failed_take_of_its_lease_leaves_it_free(
    node: Node, stage: WriteStage
) -> None:
    """The take landed (``acknowledgement``) or not, and the runner stops before it starts
    again (``run()`` stopped during its backoff): the lease is not left held until it runs
    out, so the next runner starts at once."""
    node.faults.fail(1, writes=["acquire"], at=stage)
    assert not node.step(node.runner.start)
    node.runner.close()
    node.check_released()
    assert node.new_runner().start(wait=False)  # LeaseHeld if it were left held


@pytest.mark.parametrize("stage", STAGES)
def test_a_lease_whose_release_fails(node: Node, stage: WriteStage) -> None:
    """Given up while the storage fails: it runs out by itself (not held for ever), and
    what was handled is committed first."""
    node.drain()
    node.faults.fail(1, writes=["release"], at=stage)
    node.runner.close()  # logged, not raised: the lease runs out by itself
    state = node.state()
    if stage == "acknowledgement":
        assert state.lease_holder is None
    else:
        assert state.lease_holder == node.runner.holder
        assert state.lease_expires_at <= node.backend.consumer_clock() + SETTINGS["lease_ttl"]
        assert node.info()["running"] is True
    node.check()


@pytest.mark.parametrize("stage", STAGES)
def test_a_commit_at_close_that_fails(node: Node, stage: WriteStage) -> None:
    """A runner stops and its last commit fails: the lease is given up all the same, and
    the next runner hands over again what did not land, counting nothing twice."""
    assert node.step(lambda: node.runner.run_once(limit=4))  # 0..3 handled, 0..2 committed
    node.faults.fail(1, writes=["move"], at=stage)
    assert not node.step(node.runner.close)
    node.check_released()
    second = node.new_runner()
    node.drain(second)
    second.close()
    node.check()


@pytest.mark.parametrize("stage", STAGES)
def test_a_reset_whose_write_fails(node: Node, stage: WriteStage) -> None:
    node.drain()
    node.runner.close()
    node.faults.fail(1, writes=["reset"], at=stage)
    assert not node.step(lambda: node.store.bus.consumers.reset(NAME, 0))
    node.store.bus.consumers.reset(NAME, 0)  # the operator tries again
    assert node.state().position == 0


@pytest.mark.parametrize("stage", STAGES)
def test_a_retry_the_heartbeat_wrote_is_ended_once_its_record_is_handled(
    node: Node, stage: WriteStage
) -> None:
    """The heartbeat writes a record being retried as the last error (ADR 0058); that write
    fails. Once the record is handled, ``chanlog consumers`` must not show the retry."""
    retried = 2
    node.handler.transient[retried] = 1

    def beat_failing() -> None:  # during the retry: the failure stands
        node.faults.fail(1, writes=["move"], at=stage, matching=error_only)
        node.beat()
        assert node.faults.failed == ["move"]

    node.handler.during[retried] = lambda: node.handler.during.update({retried: beat_failing})
    assert node.step(lambda: node.runner.run_once(limit=PARKED))  # up to the parked one
    node.runner.flush()
    node.beat()  # the record handled: what the beat wrote, if anything, is ended
    assert node.info()["last_error"] is None
    node.drain()
    node.check()
    assert node.info()["last_error"] == node.store.bus.consumers.parked(NAME)[0].error


@pytest.mark.parametrize("stage", STAGES)
def test_renewals_that_fail_until_the_lease_runs_out(node: Node, stage: WriteStage) -> None:
    """The heartbeat cannot renew the lease until it runs out: the runner's next commit is
    refused, it forgets what it did not commit and takes the lease again (``run()``), and
    hands those records over again: at least once, counted once."""
    assert node.step(lambda: node.runner.run_once(limit=4))  # 0..2 committed, 3 pending
    node.faults.fail(1, writes=["acquire"], at="begin" if stage == "commit" else stage)
    node.beat()
    expire(node)
    with pytest.raises(LeaseHeld):
        node.runner.flush()
    node.runner._let_go()  # what run() does on LeaseHeld
    node.drain()
    node.check()
    assert node.handler.calls.count(3) == 2  # handed over again, counted once


@pytest.mark.parametrize("stage", STAGES)
def test_a_replay_whose_commit_fails(node: Node, stage: WriteStage) -> None:
    node.drain()
    node.handler.broken.clear()  # healed
    assert node.store.bus.consumers.replay(NAME) == 1
    node.faults.fail(1, writes=["move"], at=stage, matching=lambda move: bool(move.unparked))
    node.drain()
    assert node.faults.failed == ["move"]
    node.check(parked=set())
    assert node.info()["last_error"] is None


class OwnPosition(Handler):
    """A handler that keeps its own position (a read model): it has applied every record
    up to :attr:`own`."""

    own = 6

    def position(self, consumer: str) -> int | None:
        return self.own

    def __call__(self, record: RecordedEvent) -> list[Event] | None:
        if record.offset < self.own:  # applied before: nothing to do
            self.calls.append(record.offset)
            self.handled.append(record.offset)
            return None
        return super().__call__(record)


@pytest.mark.parametrize("stage", STAGES)
def test_a_move_to_the_handlers_own_position_that_fails(node: Node, stage: WriteStage) -> None:
    """The runner starts from a handler's own position, further than the stored one, and
    moves there first: that move fails. The start fails, the lease is given up, the next
    start goes on from the handler's position."""
    node.handler = OwnPosition()
    node.handler.broken.clear()
    runner = node.new_runner()
    node.faults.fail(1, writes=["move"], at=stage)
    assert not node.step(runner.start)
    node.check_released()
    node.drain(runner)
    assert min(node.handler.calls) == OwnPosition.own  # nothing below it handed over
    assert node.state().position == len(node.store)
    runner.close()


class Pipelining(Handler):
    """A handler whose effects become durable later (a relay waiting for acknowledgements,
    :class:`~chanlog.bus.handlers.SettlesLater`): durable up to :attr:`durable`."""

    durable: int | None = 0

    def settled(self) -> int | None:
        return self.durable

    def settle(self, timeout: float) -> bool:
        return True


@pytest.mark.parametrize("stage", STAGES)
def test_a_commit_that_does_not_move_the_position_fails(node: Node, stage: WriteStage) -> None:
    """A handler that settles later has made nothing durable yet: the runner commits what it
    counted without moving the position. That commit fails; landed or not, each handling
    is counted once."""
    node.handler = Pipelining()
    runner = node.new_runner()
    assert node.step(lambda: runner.run_once(limit=PARKED))  # 0..3, none durable
    node.faults.fail(1, writes=["move"], at=stage, matching=plain_commit)
    assert not node.step(runner.flush)
    assert node.step(runner.flush)
    state = node.state()
    assert (state.position, state.handled) == (0, PARKED)
    node.handler.durable = None  # all durable now
    node.drain(runner)
    runner.close()
    node.check()


def test_a_storage_failure_the_run_waits_out_is_shown_by_chanlog_consumers(node: Node) -> None:
    """The runner cannot read the log (its commits and lease work): ``run()`` retries with
    backoff, and the heartbeat writes the storage failure as the consumer's last error, so
    ``chanlog consumers`` in another process says why the lag grows; once the run goes on,
    it is ended (ADR 0064)."""
    node.transactions.reading = False
    runner = node.new_runner(lease_ttl=0.3)  # a beat every 0.1 s
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    try:
        failure = "StorageError: the database cannot read the log"
        until(lambda: node.info().get("last_error") == failure)
        assert runner.stats.retrying and node.info()["running"] is True
        assert node.handler.calls == []
        node.transactions.reading = True
        until(lambda: node.state().position == len(node.store) and not runner.stats.retrying)
        until(lambda: node.info()["last_error"] == node.store.bus.consumers.parked(NAME)[0].error)
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    node.check()
    node.check_released()


def test_a_reset_made_while_the_lease_had_run_out_is_not_undone(node: Node) -> None:
    """The heartbeat could not renew the lease until it ran out, and an operator reset the
    consumer meanwhile (allowed: nobody held it). The next renewal takes the lease again;
    the runner must not then commit its old position over the reset: it goes on from the
    stored position, as after a lease lost to another runner."""
    assert node.step(lambda: node.runner.run_once(limit=PARKED))  # 0..2 committed, 3 pending
    expire(node)
    node.store.bus.consumers.reset(NAME, 0)
    node.beat()  # the storage is back: the lease is taken again
    with pytest.raises(LeaseHeld):
        node.runner.flush()
    assert node.state().position == 0
    node.runner._let_go()  # what run() does on LeaseHeld
    node.drain()
    assert node.handler.calls[:PARKED] == list(range(PARKED))
    assert node.handler.calls.count(0) == 2  # handed over again, as the reset asked
    assert node.state().position == len(node.store)


def expire(node: Node, runner: ConsumerRunner | None = None) -> None:
    """Make the runner's lease run out now (as when its heartbeat could not renew it)."""
    lease = (runner or node.runner)._lease
    expires = node.backend.acquire_lease(NAME, lease.holder, 0.001).lease_expires_at
    lease.expires_at = expires
    while node.backend.consumer_clock() <= expires:  # a millisecond: nothing to wait on
        time.sleep(0.001)


__all__ = [
    "NAME",
    "Node",
    "error_only",
    "park",
    "plain_commit",
    "test_a_commit_at_close_that_fails",
    "test_a_commit_that_does_not_move_the_position_fails",
    "test_a_handlers_appends_whose_commit_fails",
    "test_a_lease_whose_release_fails",
    "test_a_move_to_the_handlers_own_position_that_fails",
    "test_a_park_whose_commit_fails",
    "test_a_plain_position_commit_that_fails",
    "test_a_replay_whose_commit_fails",
    "test_a_reset_made_while_the_lease_had_run_out_is_not_undone",
    "test_a_reset_whose_write_fails",
    "test_a_retry_the_heartbeat_wrote_is_ended_once_its_record_is_handled",
    "test_a_runner_that_stops_after_a_failed_take_of_its_lease_leaves_it_free",
    "test_a_start_whose_write_fails",
    "test_a_storage_failure_the_run_waits_out_is_shown_by_chanlog_consumers",
    "test_renewals_that_fail_until_the_lease_runs_out",
]
