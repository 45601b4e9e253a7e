"""A model-based test of durable consumers (Hypothesis ``RuleBasedStateMachine``), shared by
the memory and SQLite tests (``tests/bus/test_consumer_model.py``) and the PostgreSQL
plugin's (``plugins/chanlog-postgres/tests/test_consumer_model.py``).

The machine appends records of several subjects, drives one consumer's runner step by step
in the test's thread (``run_once``, ``flush``, ``close``: no thread, no sleep), with a handler
whose behaviour per record is drawn (succeeds, fails a few times then succeeds, fails until
healed, appends an event), makes the storage fail at the runner's reads and commits, stops and
starts runners, kills one and takes its lease over, resets the consumer, replays and drops
parked records. After every step it checks the headline promise, *a durable consumer never
skips a record*, against what the backend keeps:

- the committed position never passes a matching record that was neither handled (its
  handler returned, and what it appended is in the log) nor parked;
- the position only moves forward, except by an explicit reset;
- a record reaches the handler in log order within one runner, only if it matches, and again
  only while the committed position has not passed it (DESIGN section 10: at least once; a
  record handled and not committed, a commit that failed or a runner that died, is handed
  over again), or as a replay an operator asked for;
- a record is parked only after ``max_deliver`` failed tries in a row, never one that fails
  fewer times; ``parked`` is the number of parked rows;
- the last error is a failure that still stands (ADR 0054, ADR 0058): ``None`` with nothing
  parked, else the error of a record parked last, which begins with its offset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

import attrs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import chanlog
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.bus.lease import _pid_scope
from chanlog.bus.runner import ConsumerRunner
from chanlog.bus.spec import ConsumerSpec
from chanlog.errors import LeaseHeld, StorageError
from chanlog.events import MessageAcked, MessageReceived, MessageSent, ObjectiveCreated
from chanlog.events.base import Event
from chanlog.records import ConsumerState, ParkedRecord, RecordedEvent, StoredRecord
from chanlog.testing import FlakyBackend
from chanlog.testing.events import bytes32_of

NAME = "model"
MAX_DELIVER = 3
LONG_LEASE = 600.0  # no heartbeat beats during a run: the test's thread alone writes
FILTERS: tuple[tuple[str, ...], ...] = (
    (">",),
    ("chanlog.objective.>",),
    ("chanlog.messaging.>",),
    ("chanlog.*.message-received.>",),
    ("chanlog.objective.>", "chanlog.*.message-acked.>"),
)
KINDS = ("objective-created", "message-sent", "message-received")
Behaviour = Literal["ok", "transient", "permanent", "appends"]
BEHAVIOURS: tuple[Behaviour, ...] = ("ok", "transient", "permanent", "appends")
Stage = Literal["begin", "commit", "acknowledgement"]
STAGES: tuple[Stage, ...] = ("begin", "commit", "acknowledgement")


def model_settings(examples: int, steps: int) -> settings:
    """Bounded for CI: ``examples`` runs of up to ``steps`` rules each, no deadline (a step
    on a loaded machine may take long)."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# -- storage failures ------------------------------------------------------------------------


class Faults:
    """Failures armed at a backend's reads, write transactions and plain consumer moves.

    The memory backend's are :class:`~chanlog.testing.FlakyBackend`'s own; the reads and
    write transactions of another backend, and every backend's ``move_consumer`` (which
    FlakyBackend leaves working), are wrapped on the instance, failing the same way: at
    ``"begin"`` nothing runs, at ``"commit"`` it runs and is rolled back, at
    ``"acknowledgement"`` it commits and the caller is told it failed."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.flaky = backend if isinstance(backend, FlakyBackend) else None
        self._armed: dict[str, int] = {"read": 0, "move": 0}
        self._write_stage: Stage = "begin"
        self._move_stage: Stage = "begin"
        self._writes = 0
        self.failed = 0
        self._read = backend.read
        self._write = backend.write
        self._move = backend.move_consumer  # type: ignore[attr-defined]
        backend.move_consumer = self._moving  # type: ignore[attr-defined]
        if self.flaky is None:
            backend.read = self._reading  # type: ignore[method-assign]
            backend.write = self._writing  # type: ignore[method-assign]

    def raw_read(self, start: int, end: int) -> list[StoredRecord]:
        """The log's records, past any armed failure (what the model checks against)."""
        if self.flaky is not None:
            return list(MemoryBackend.read(self.flaky, start, end))
        return list(self._read(start, end))

    def arm_reads(self, count: int) -> None:
        if self.flaky is not None:
            self.flaky.fail_reads(count)
        else:
            self._armed["read"] = count

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No failure while in it; those armed are armed again after it (the producer's
        appends are not what the failures are for)."""
        flaky = self.flaky
        if flaky is not None:
            reads, writes = flaky.reads_to_fail, flaky.writes_to_fail
        else:
            reads, writes = self._armed["read"], self._writes
        stage = self._write_stage
        self.arm_reads(0)
        self.arm_writes(0, stage)
        try:
            yield
        finally:
            self.arm_reads(reads)
            self.arm_writes(writes, stage)

    def arm_writes(self, count: int, at: Stage) -> None:
        self._write_stage = at
        if self.flaky is not None:
            for stage in STAGES:
                self.flaky.fail_writes(count if stage == at else 0, at=stage)
        else:
            self._writes = count

    def arm_moves(self, count: int, at: Stage) -> None:
        self._armed["move"], self._move_stage = count, at

    def disarm(self) -> None:
        self.arm_reads(0)
        self.arm_writes(0, "begin")
        self.arm_moves(0, "begin")

    def used(self) -> int:
        """Failures raised so far."""
        flaky = self.flaky
        extra = 0 if flaky is None else flaky.failed_reads + flaky.failed_writes
        return self.failed + extra

    def _take(self, kind: str) -> bool:
        if self._armed[kind] <= 0:
            return False
        self._armed[kind] -= 1
        self.failed += 1
        return True

    def _reading(self, start: int, end: int) -> Iterator[StoredRecord]:
        if self._take("read"):
            raise StorageError("the database is restarting (read)")
        return self._read(start, end)

    def _moving(self, move: Any) -> None:
        stage = self._move_stage
        if self._take("move"):
            if stage != "acknowledgement":
                raise StorageError(f"the database is restarting (move, {stage})")
            self._move(move)
            raise StorageError("the database is restarting (move acknowledgement)")
        self._move(move)

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        stage: Stage | None = None
        if self._writes > 0:
            self._writes -= 1
            self.failed += 1
            stage = self._write_stage
        if stage == "begin":
            raise StorageError("the database is restarting (write, begin)")
        refused = StorageError("the database is restarting (write, commit)")
        with self._write() as transaction:
            yield transaction
            if stage == "commit":
                raise refused  # rolls the transaction back
        if stage == "acknowledgement":
            raise StorageError("the database is restarting (write acknowledgement)")


# -- the runner's process --------------------------------------------------------------------


class RunnerProcess:
    """A process the leases of runners name as their holder (``host:pid:nonce:scope``):
    killing it makes those holders gone (ADR 0045), as a ``chanlog run`` killed with
    SIGKILL."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(["sleep", "600"])

    def holder(self) -> str:
        """A new runner's identity in this process."""
        return f"{socket.gethostname()}:{self.child.pid}:{uuid.uuid4().hex[:8]}:{_pid_scope()}"

    def kill(self) -> None:
        if self.child.poll() is None:
            os.kill(self.child.pid, signal.SIGKILL)
        self.child.wait()


# -- the model -------------------------------------------------------------------------------


@attrs.define
class Planned:
    """What the handler does with one event, drawn when it was appended."""

    behaviour: Behaviour
    failures_left: int = 0  # "transient": failures before it succeeds
    broken: bool = False  # "permanent": fails until healed


@attrs.define
class Call:
    runner: int
    offset: int
    replaying: bool
    ok: bool


class ModelHandler:
    """The consumer's handler: does what the model planned for each record, and reports
    every call to the model. ``replay`` makes replays of parked records known (ADR 0052's
    protocol; a handler without it is called the same way)."""

    def __init__(self, model: ConsumerModel, runner: int) -> None:
        self.model = model
        self.runner = runner

    def __call__(self, record: RecordedEvent) -> list[Event] | None:
        return self.model.handle(self.runner, record, replaying=False)

    def replay(self, record: RecordedEvent) -> list[Event] | None:
        return self.model.handle(self.runner, record, replaying=True)


Opener = Callable[[], tuple[chanlog.EventStore, Faults, Callable[[], None]]]


class ConsumerModel(RuleBasedStateMachine):
    """The state machine; :func:`machine` binds it to a backend."""

    open_store: Opener

    def __init__(self) -> None:
        super().__init__()
        self.store, self.faults, self._cleanup = type(self).open_store()
        self.backend: Any = self.store.backend
        self.patterns: tuple[str, ...] = (">",)
        self.spec = ConsumerSpec(NAME)
        self.planned: dict[str, Planned] = {}  # by event id
        self.appended = 0  # events the machine made (their fields unique)
        self.runner: ConsumerRunner | None = None
        self.runner_number = 0
        self.processes: list[RunnerProcess] = []
        self.process: RunnerProcess | None = None
        self.calls: list[Call] = []
        self.in_order: dict[int, int] = {}  # runner -> last offset handed in order
        self.handled: set[int] = set()  # handled since the last reset below them
        self.awaiting: dict[int, str] = {}  # offset -> the ack its handler returned
        self.failed_in_a_row: dict[int, int] = {}
        self.parkable: set[int] = set()  # failed max_deliver tries in a row
        self.skipped: set[int] = set()  # passed by a reset forward, or dropped
        self.dropped: dict[int, int] = {}  # offset -> calls made when it was dropped
        self.floor = 0  # the position may not go below it (but by a reset)
        self.matching: list[bool] = []
        self.successes = 0  # handlings the consumer's count should hold
        self.violations: list[str] = []  # found inside the handler
        self.replayed: set[int] = set()  # replayed with success, no commit failed since
        self.lossy = False  # a runner died or failed to close: what it had not committed is lost
        self.ids: set[str] = set()
        self.used_faults = 0

    # -- the handler --------------------------------------------------------------------

    def handle(self, runner: int, record: RecordedEvent, *, replaying: bool) -> list[Event] | None:
        try:
            self._check_call(runner, record, replaying=replaying)
        except AssertionError as violation:  # the runner would take it for the handler's failure
            self.violations.append(str(violation))
        return self._planned_outcome(runner, record, replaying=replaying)

    def _check_call(self, runner: int, record: RecordedEvent, *, replaying: bool) -> None:
        offset = record.offset
        assert runner == self.runner_number, (
            f"runner {runner} handed {offset} after it was replaced"
        )
        assert self.filter().matches(record), f"offset {offset} does not match {self.patterns}"
        stored = self._state()
        if replaying:
            flagged = {p.offset for p in self.backend.parked_records(NAME) if p.replay}
            assert offset in flagged, f"offset {offset} replayed without a replay requested"
        else:
            last = self.in_order.get(runner, -1)
            assert offset >= last, f"offset {offset} handed after {last}: out of log order"
            self.in_order[runner] = offset
            if offset in self.handled:
                assert stored is not None and stored.position <= offset, (
                    f"offset {offset} handed again though its handling was committed "
                    f"(position {stored and stored.position})"
                )

    def _planned_outcome(
        self, runner: int, record: RecordedEvent, *, replaying: bool
    ) -> list[Event] | None:
        offset = record.offset
        plan = self.planned.get(record.event_id, Planned("ok"))
        fails = plan.broken or (plan.behaviour == "transient" and plan.failures_left > 0)
        self.calls.append(Call(runner, offset, replaying, not fails))
        if fails:
            plan.failures_left -= 1
            self.failed_in_a_row[offset] = self.failed_in_a_row.get(offset, 0) + 1
            if self.failed_in_a_row[offset] >= MAX_DELIVER:
                self.parkable.add(offset)
            raise RuntimeError(f"the model's handler fails on {offset}")
        self.failed_in_a_row[offset] = 0
        if replaying:
            self.replayed.add(offset)
        if plan.behaviour == "appends":
            self.appended += 1
            ack = MessageAcked(
                message_id=bytes32_of(f"ack:{offset}:{self.appended}"),
                peer_id="peer-ack",
                roundtrip_ms=offset,
            )
            self.awaiting[offset] = ack.event_id
            return [ack]
        self.handled.add(offset)
        self.successes += 1
        return None

    # -- helpers ------------------------------------------------------------------------

    def filter(self) -> Any:
        return self.store.bus.subject_filter(list(self.patterns))

    def _state(self) -> ConsumerState | None:
        state: ConsumerState | None = self.backend.consumer_state(NAME)
        return state

    def _rows(self) -> list[ParkedRecord]:
        if self._state() is None:
            return []
        rows: list[ParkedRecord] = self.backend.parked_records(NAME)
        return rows

    def _new_runner(self) -> ConsumerRunner:
        self.runner_number += 1
        if self.process is None:
            self.process = RunnerProcess()
            self.processes.append(self.process)
        runner = ConsumerRunner(
            self.store,
            self.spec,
            ModelHandler(self, self.runner_number),
            self.filter(),
            holder=self.process.holder(),
        )
        assert runner.start(wait=False)
        state = self._state()
        assert state is not None and state.lease_holder == runner.holder
        self.in_order[self.runner_number] = state.position
        self.failed_in_a_row.clear()  # a new delivery counts its tries from 1
        self.replayed.clear()
        return runner

    def _active(self) -> ConsumerRunner:
        if self.runner is None:
            self.runner = self._new_runner()
        return self.runner

    @contextmanager
    def _storage_may_fail(self) -> Iterator[list[StorageError]]:
        """Run a step of the runner: a StorageError is accepted only when an armed failure
        was used; its delivery in progress is over (the next counts its tries from 1)."""
        raised: list[StorageError] = []
        before = self.faults.used()
        calls = len(self.calls)
        try:
            yield raised
        except StorageError as error:
            raised.append(error)
        if raised:
            used = self.faults.used() > before
            assert used, f"a StorageError no failure was armed for: {raised[0]}"
            self.failed_in_a_row.clear()
            self.replayed.clear()
            # A replay whose commit failed is made again, not committed again (ADR 0059): the
            # handler's count no longer tells handlings apart from counted ones.
            self.lossy = self.lossy or any(call.replaying for call in self.calls[calls:])

    def _event(self, kind: str, entity: int) -> Event:
        self.appended += 1
        number = self.appended
        if kind == "objective-created":
            return ObjectiveCreated(
                objective_id=bytes32_of(f"objective:{number}"),
                objective_type="DirectFund",
                timestamp_ms=number,
            )
        cls = MessageSent if kind == "message-sent" else MessageReceived
        return cls(
            message_id=bytes32_of(f"message:{number}"),
            peer_id=f"peer-{entity}",
            objective_id=bytes32_of(f"objective-of:{entity}"),
            timestamp_ms=number,
        )

    def _append(self, events: list[Event]) -> None:
        """Append ``events`` (the failures armed are kept for the runner)."""
        with self.faults.paused():
            self.store.append_batch(events)

    # -- rules --------------------------------------------------------------------------

    @initialize(
        patterns=st.sampled_from(FILTERS),
        commit_every=st.sampled_from([1, 2, 5, 1000]),
        batch_size=st.sampled_from([1, 3, 500]),
    )
    def configure(self, patterns: tuple[str, ...], commit_every: int, batch_size: int) -> None:
        self.patterns = patterns
        self.spec = ConsumerSpec(
            NAME,
            subjects=list(patterns),
            max_deliver=MAX_DELIVER,
            backoff=[0.0],
            commit_every=commit_every,
            commit_interval=3600.0,  # commits by count only: the same run each time
            lease_ttl=LONG_LEASE,
            batch_size=batch_size,
        )

    @rule(
        kinds=st.lists(
            st.tuples(
                st.sampled_from(KINDS),
                st.integers(0, 2),
                st.sampled_from(BEHAVIOURS),
                st.integers(1, MAX_DELIVER - 1),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def append(self, kinds: list[tuple[str, int, Behaviour, int]]) -> None:
        events = []
        for kind, entity, behaviour, failures in kinds:
            event = self._event(kind, entity)
            if behaviour == "appends" and kind != "message-received":
                behaviour = "ok"  # only a message received is answered (by an ack)
            self.planned[event.event_id] = Planned(
                behaviour, failures_left=failures, broken=behaviour == "permanent"
            )
            events.append(event)
        self._append(events)

    @rule(limit=st.sampled_from([1, 2, 5, None, None]))
    def step(self, limit: int | None) -> None:
        runner = self._active()
        with self._storage_may_fail():
            runner.run_once(limit=limit)

    @rule()
    def drain(self) -> None:
        runner = self._active()
        with self._storage_may_fail() as raised:
            runner.drain()
        if not raised:
            self.check_settled()

    @rule()
    def flush(self) -> None:
        runner = self._active()
        with self._storage_may_fail() as raised:
            runner.flush()
        if not raised:
            self.check_settled()

    @rule(
        where=st.sampled_from(["read", "write", "move", "move"]),
        count=st.integers(1, 2),
        at=st.sampled_from(STAGES),
    )
    def fail_storage(self, where: str, count: int, at: Stage) -> None:
        """Arm failures at the next reads, write transactions (a handler's appends with the
        position) or plain position commits: at begin, refused at commit, or committed and
        reported as failed (ADR 0042)."""
        if where == "read":
            self.faults.arm_reads(count)
        elif where == "write":
            self.faults.arm_writes(count, at)
        else:
            self.faults.arm_moves(count, at)

    @precondition(lambda self: self.runner is not None)
    @rule(how=st.sampled_from(["stopped", "stopped", "killed", "expired"]))
    def restart(self, how: str) -> None:
        """The runner stops (the next step starts a new one), or dies and a new runner
        takes its lease over."""
        if how == "stopped":
            self.stop()
        else:
            self.take_over(how)

    def stop(self) -> None:
        runner = self.runner
        assert runner is not None
        self.runner = None
        with self._storage_may_fail() as raised:
            runner.close()  # gives the lease up even when its last commit failed
        self.lossy = self.lossy or bool(raised)
        state = self._state()
        assert state is not None and state.lease_holder is None
        if not raised:
            self.check_settled()

    def take_over(self, how: str) -> None:
        """The runner dies (its process killed: the lease is taken over at once) or freezes
        (its lease runs out); a new runner of the same name takes the lease, and the old
        one can no longer move the position."""
        old = self.runner
        process = self.process
        assert old is not None and process is not None
        old._lease.stop_keeping()  # its heartbeat dies with it
        self.lossy = True
        if how == "killed":
            process.kill()
            self.process = None
        else:
            expires = self.backend.acquire_lease(NAME, old.holder, 0.001).lease_expires_at
            while self.backend.consumer_clock() <= expires:  # a millisecond: no event to wait on
                time.sleep(0.001)
        before = self._state()
        self.runner = None
        self._active()
        with suppress(LeaseHeld, StorageError):
            old.flush()  # what it handled and did not commit stays uncommitted
        after = self._state()
        assert before is not None and after is not None
        assert (after.position, after.parked) == (before.position, before.parked)

    @rule(to=st.sampled_from(["earliest", "latest", "back", "here"]))
    def reset(self, to: str) -> None:
        state = self._state()
        if state is None:
            return
        if self.runner is not None:
            try:
                self.store.bus.consumers.reset(NAME, 0)
            except LeaseHeld:
                pass
            else:
                raise AssertionError("a reset went through while a runner held the lease")
            assert self._state() == state
            self.stop()
            state = self._state()
            assert state is not None
        head = len(self.store)
        targets: dict[str, str | int] = {
            "earliest": 0,
            "latest": "latest",
            "back": state.position // 2,
        }
        target = targets.get(to, state.position)
        reset = self.store.bus.consumers.reset(NAME, target)
        position = reset.position
        assert position == (head if target == "latest" else target)
        if position < state.position:
            self.handled = {o for o in self.handled if o < position}
            self.skipped = {o for o in self.skipped if o < position}
            self.awaiting = {o: i for o, i in self.awaiting.items() if o < position}
        else:
            self.skipped |= set(range(state.position, position))
        self.floor = position

    @precondition(lambda self: bool(self._rows()))
    @rule(
        action=st.sampled_from(["replay", "replay", "replay healed", "drop"]),
        which=st.sampled_from(["all", "first", "last"]),
    )
    def parked(self, action: str, which: str) -> None:
        """An operator replays parked records (healed first: the handler now succeeds on
        them) or drops them."""
        if action == "drop":
            self.drop(which)
        else:
            self.replay(action == "replay healed", which)

    def replay(self, heal: bool, which: str) -> None:
        rows = self._rows()
        if not rows:
            return
        chosen = rows if which == "all" else [rows[0] if which == "first" else rows[-1]]
        if heal:
            for row in chosen:
                self.planned.setdefault(row.event_id, Planned("ok")).broken = False
        offsets = None if which == "all" else [row.offset for row in chosen]
        assert self.store.bus.consumers.replay(NAME, offsets) == len(chosen)

    def drop(self, which: str) -> None:
        rows = self._rows()
        if not rows:
            return
        offsets = None if which == "all" else [rows[0 if which == "first" else -1].offset]
        dropped = self.store.bus.consumers.drop(NAME, offsets)
        assert dropped == (len(rows) if offsets is None else 1)
        gone = {row.offset for row in rows} if offsets is None else set(offsets)
        state = self._state()
        assert state is not None
        # Forgotten: not handed over again, unless a reset moves the position below them.
        self.skipped |= {offset for offset in gone if offset < state.position}
        self.dropped.update(dict.fromkeys(gone, len(self.calls)))

    # -- invariants ---------------------------------------------------------------------

    def _refresh(self) -> None:
        """Read what the log gained (past any armed failure)."""
        records = self.faults.raw_read(len(self.matching), len(self.store))
        accepts = self.filter().matches
        for stored in records:
            record = self.store.decode(stored)
            self.matching.append(accepts(record))
            self.ids.add(record.event_id)
        for offset, ack in list(self.awaiting.items()):
            if ack in self.ids:  # what it appended committed: it was handled
                self.handled.add(offset)
                self.successes += 1
                del self.awaiting[offset]

    @invariant()
    def never_skips(self) -> None:
        assert not self.violations, self.violations
        state = self._state()
        if state is None:
            return
        self._refresh()
        rows = self._rows()
        parked = {row.offset for row in rows}
        position = state.position
        assert position >= self.floor, f"the position went back: {position} < {self.floor}"
        self.floor = position
        assert position <= len(self.store)
        for offset in range(position):
            if self.matching[offset] and offset not in self.skipped:
                assert offset in self.handled or offset in parked, (
                    f"position {position} passed offset {offset}, neither handled nor parked"
                )
        assert state.parked == len(rows), f"parked {state.parked}, {len(rows)} parked rows"
        assert state.handled <= self.successes, (
            f"handled {state.handled}, but only {self.successes} handlings: one counted twice"
        )
        for row in rows:
            assert self.matching[row.offset]
            assert row.offset in self.parkable, (
                f"offset {row.offset} parked before {MAX_DELIVER} tries"
            )
            assert row.attempts >= MAX_DELIVER
            assert row.error.startswith(f"offset {row.offset}: RuntimeError"), row.error
            if row.offset in self.dropped:
                since = self.calls[self.dropped[row.offset] :]
                assert any(c.offset == row.offset and not c.ok for c in since), (
                    f"offset {row.offset} is parked again though it was dropped and has not "
                    "failed since"
                )
        self._check_last_error(state, rows)

    def _check_last_error(self, state: ConsumerState, rows: list[ParkedRecord]) -> None:
        if not rows:
            assert state.last_error is None, f"nothing parked, last error {state.last_error!r}"
            return
        latest = max(row.parked_at for row in rows)
        standing = {row.error for row in rows if row.parked_at == latest}
        assert state.last_error in standing, (
            f"last error {state.last_error!r} is not the error of a record parked last "
            f"({sorted(standing)})"
        )

    def check_settled(self) -> None:
        """After a commit of everything the runner had done: each handling is counted once
        (ADR 0042), and a parked record is one whose latest try by this runner (if it tried
        it) failed."""
        self._refresh()
        state = self._state()
        assert state is not None
        if self.lossy:
            assert state.handled <= self.successes
        else:
            assert state.handled == self.successes, (
                f"handled {state.handled}, {self.successes} records handled"
            )
        latest: dict[int, bool] = {}
        for call in self.calls:
            if call.runner == self.runner_number:
                latest[call.offset] = call.ok
        for row in self._rows():
            if row.replay:  # still to replay: a replay whose commit failed is made again
                assert row.offset not in self.replayed, (
                    f"offset {row.offset} replayed, still marked"
                )
                continue
            assert latest.get(row.offset, False) is False or row.offset in self.awaiting, (
                f"offset {row.offset} is still parked though it was handled"
            )

    def teardown(self) -> None:
        self.faults.disarm()
        try:
            if self.runner is not None:
                self.runner.close()
        finally:
            for process in self.processes:
                process.kill()
            self.store.close()
            self._cleanup()


def machine(opener: Opener) -> type[ConsumerModel]:
    """The machine on the stores ``opener`` opens (store, its faults, a cleanup)."""
    return type("ConsumerModelOn", (ConsumerModel,), {"open_store": staticmethod(opener)})


__all__ = ["ConsumerModel", "Faults", "machine", "model_settings"]
