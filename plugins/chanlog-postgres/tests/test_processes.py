"""Several processes on one PostgreSQL log: dense offsets, cross-process subscribers,
optimistic concurrency and crashes (issue 8, "done when")."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chanlog_postgres import PostgresBackend
from psycopg.conninfo import make_conninfo

from chanlog import EventStore
from chanlog.testing.events import message_sent, sample_events

pytestmark = pytest.mark.postgres

WORKER_SCRIPT = Path(__file__).with_name("pg_worker.py")
DEADLINE = 180.0
"""Seconds a test waits for another process before failing (a bound, not a timing claim)."""


class Worker:
    """A ``pg_worker.py`` process and its JSON-lines output."""

    def __init__(self, mode: str, **args: Any) -> None:
        # Kept open for the worker's lifetime (closed in close()), so no context manager.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), mode, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._messages.put(json.loads(line))
        self._messages.put(None)

    def errors(self) -> str:
        """What the process wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def next_message(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next JSON line; fails the test if the process ends or stays silent."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"worker silent for {timeout} s; stderr:\n{self.errors()}")
        if message is None:
            self.process.wait(timeout=DEADLINE)
            pytest.fail(f"worker exited ({self.process.returncode}); stderr:\n{self.errors()}")
        return message

    def send(self, line: str) -> None:
        """Write one line to the process's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        """Wait for a clean exit."""
        returncode = self.process.wait(timeout=DEADLINE)
        assert returncode == 0, self.errors()

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=DEADLINE) == -signal.SIGKILL

    def close(self) -> None:
        """Make sure the process is gone and its pipes closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


@pytest.fixture
def start_worker() -> Any:
    """Starts workers and makes sure every one is gone when the test ends."""
    workers: list[Worker] = []

    def start(mode: str, **args: Any) -> Worker:
        worker = Worker(mode, **args)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE} s waiting for {what}")
        time.sleep(0.01)


class RawTail(threading.Thread):
    """Reads the table past the head, by offset only, while writers run: if a later offset
    could ever become visible before an earlier one, this reader would see a gap."""

    def __init__(self, backend: PostgresBackend, until: int) -> None:
        super().__init__(daemon=True)
        self.backend = backend
        self.until = until
        self.event_ids: list[bytes] = []
        self.gaps: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        expected = 0
        while expected < self.until and not self.stop.is_set():
            before = expected
            for record in self.backend.read(expected, 2**62):
                if record.offset != expected:
                    self.gaps.append((expected, record.offset))
                    return
                self.event_ids.append(record.event_id)
                expected += 1
            if expected == before:
                time.sleep(0.005)


@pytest.mark.slow
def test_four_processes_append_twenty_thousand_dense_offsets(
    postgres_dsn: str, schema: str, backend: PostgresBackend, start_worker: Any
) -> None:
    writers, per_writer = 4, 5000
    total = writers * per_writer
    predicted = [
        [event.event_id for event in sample_events(per_writer, salt=f"writer-{writer}:")]
        for writer in range(writers)
    ]
    store = EventStore(backend, projections=[])
    delivered: list[tuple[int, str]] = []
    store.subscribe(lambda record: delivered.append((record.offset, record.event_id)), 0)
    tail = RawTail(backend, total)
    tail.start()
    # Two writers append one event per call, two append batches of 100.
    workers = [
        start_worker(
            "append",
            dsn=postgres_dsn,
            schema=schema,
            writer=writer,
            count=per_writer,
            batch=1 if writer < 2 else 100,
            # Commit order and visibility do not depend on flushing the server's WAL per
            # commit; skipping the flush keeps 10,000 single-event commits fast.
            durability="normal",
        )
        for writer in range(writers)
    ]
    for worker in workers:
        assert worker.next_message() == {"ready": True}
    for worker in workers:
        worker.send("go")
    offsets = [worker.next_message()["offsets"] for worker in workers]
    for worker in workers:
        worker.finish()

    for writer_offsets in offsets:
        assert len(writer_offsets) == per_writer
        assert writer_offsets == sorted(writer_offsets)
    assert sorted(o for writer_offsets in offsets for o in writer_offsets) == list(range(total))
    # Writers really interleaved (the lock was contended, not taken in turns per process).
    assert all(o[-1] - o[0] >= per_writer for o in offsets)

    log = {record.offset: record.event_id for record in store.read_from(0)}
    assert sorted(log) == list(range(total))
    for writer, writer_offsets in enumerate(offsets):
        assert [log[offset] for offset in writer_offsets] == predicted[writer]
    assert store.verify() == total

    tail.join(DEADLINE)
    assert tail.gaps == []
    assert ["0x" + event_id.hex() for event_id in tail.event_ids] == [
        log[offset] for offset in range(total)
    ]
    wait_until(lambda: len(delivered) >= total, "the subscriber to receive every event")
    store.close()
    assert delivered == [(offset, log[offset]) for offset in range(total)]


def test_a_subscriber_in_another_process_receives_every_event_in_order(
    postgres_dsn: str,
    schema: str,
    backend: PostgresBackend,
    open_postgres: Callable[..., PostgresBackend],
    start_worker: Any,
) -> None:
    with EventStore(open_postgres(), projections=[]) as seeding:
        seeding.append_batch(sample_events(5, salt="seed:"))
    total = 5 + 150 + 150
    subscriber = start_worker("subscribe", dsn=postgres_dsn, schema=schema, count=total)
    assert subscriber.next_message() == {"ready": True}
    for writer, batch in ((0, 1), (1, 30)):
        worker = start_worker(
            "append", dsn=postgres_dsn, schema=schema, writer=writer, count=150, batch=batch
        )
        assert worker.next_message() == {"ready": True}
        worker.send("go")
        assert len(worker.next_message()["offsets"]) == 150
        worker.finish()
    received = [subscriber.next_message() for _ in range(total)]
    assert subscriber.next_message() == {"done": True}
    subscriber.finish()
    expected = [
        {"offset": record.offset, "event_id": "0x" + record.event_id.hex()}
        for record in backend.read(0, total + 10)
    ]
    assert len(expected) == total
    assert received == expected


def test_conflicting_expected_versions_from_two_processes_one_wins(
    postgres_dsn: str,
    schema: str,
    backend: PostgresBackend,
    admin: psycopg.Connection[Any],
    open_postgres: Callable[..., PostgresBackend],
    start_worker: Any,
) -> None:
    application = f"chanlog-conflict-{uuid.uuid4().hex[:12]}"
    tagged_dsn = make_conninfo(postgres_dsn, application_name=application)
    first = message_sent(0)
    with EventStore(open_postgres(), projections=[]) as store:
        store.append(first)
    workers = [
        start_worker(
            "conflict",
            dsn=tagged_dsn,
            schema=schema,
            message_id=first.message_id,
            name=name,
            expected_version=1,
        )
        for name in ("peer-a", "peer-b")
    ]
    for worker in workers:
        assert worker.next_message() == {"ready": True}

    def waiting_for_the_lock() -> int:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # Hold the writer lock until both processes are queued behind it, so their appends
    # really race for the same version instead of running one after the other.
    with backend.write():
        for worker in workers:
            worker.send("go")
        wait_until(lambda: waiting_for_the_lock() == 2, "both processes to wait for the lock")
    outcomes = [worker.next_message() for worker in workers]
    for worker in workers:
        worker.finish()

    assert sorted(outcomes, key=lambda outcome: sorted(outcome)) == [
        {"conflict": 2},
        {"offset": 1},
    ]
    assert backend.head().length == 2
    assert backend.stream_version(first.message_id.lower()) == 2


def _count(admin: psycopg.Connection[Any], schema: str, query: str) -> int:
    row = admin.execute(query.format(s=f'"{schema}"')).fetchone()
    assert row is not None
    return int(row[0])


def _assert_whole_log(admin: psycopg.Connection[Any], schema: str, length: int) -> None:
    """The tables hold exactly ``length`` records and their index rows, nothing more."""
    assert _count(admin, schema, "SELECT length FROM {s}.head") == length
    assert _count(admin, schema, "SELECT count(*) FROM {s}.events") == length
    assert _count(admin, schema, "SELECT coalesce(max(position) + 1, 0) FROM {s}.events") == (
        length
    )
    # Every sample event belongs to two streams (its message and its objective).
    assert _count(admin, schema, "SELECT count(*) FROM {s}.streams") == 2 * length
    assert _count(admin, schema, "SELECT coalesce(sum(version), 0) FROM {s}.stream_versions") == (
        2 * length
    )


def test_killing_a_writer_before_its_commit_leaves_no_partial_batch(
    schema: str,
    postgres_dsn: str,
    backend: PostgresBackend,
    admin: psycopg.Connection[Any],
    start_worker: Any,
) -> None:
    worker = start_worker("pause", dsn=postgres_dsn, schema=schema, count=500)
    assert worker.next_message() == {"committed": 30}
    # All 500 rows of the next batch were sent; the transaction is open, not committed.
    assert worker.next_message() == {"staged": True}
    worker.kill()
    with EventStore(backend, projections=[]) as store:
        # Goes through the writer lock: the server rolled the dead session back.
        assert store.append(message_sent(0, salt="after:")) == 30
        assert store.verify() == 31
    _assert_whole_log(admin, schema, 31)


def test_killing_a_writer_at_any_moment_keeps_whole_batches(
    schema: str,
    postgres_dsn: str,
    backend: PostgresBackend,
    admin: psycopg.Connection[Any],
    start_worker: Any,
) -> None:
    batch = 200
    worker = start_worker("batches", dsn=postgres_dsn, schema=schema, batch=batch)
    for number in range(1, 4):
        assert worker.next_message() == {"committed": number * batch}
    # The writer is now somewhere in its fourth batch: encoding, sending or committing.
    worker.kill()
    length = backend.head().length
    assert length % batch == 0
    assert length >= 3 * batch
    _assert_whole_log(admin, schema, length)
    with EventStore(backend, projections=[]) as store:
        assert store.verify() == length
        assert store.append(message_sent(0, salt="after:")) == length


def test_worker_script_refuses_a_missing_go(
    postgres_dsn: str, schema: str, backend: PostgresBackend
) -> None:
    """The harness itself: a worker not told to go exits with an error, it does not run."""
    process = subprocess.run(
        [
            sys.executable,
            str(WORKER_SCRIPT),
            "append",
            json.dumps(
                {"dsn": postgres_dsn, "schema": schema, "writer": 0, "count": 1, "batch": 1}
            ),
        ],
        input="stop\n",
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert process.returncode != 0
    assert "expected 'go'" in process.stderr
    assert backend.head().length == 0


def test_processes_never_hold_one_consumer_lease_together(
    postgres_dsn: str, schema: str, start_worker: Any
) -> None:
    # Each worker moves the consumer one record from the position its lease returned: were
    # two workers ever to hold the lease at once (the row lock and the server's clock
    # decide), one move would be lost and the count of moves would exceed the position.
    backend = PostgresBackend(dsn=postgres_dsn, schema=schema)
    try:
        backend.ensure_consumer("race", 0, ["chanlog.>"])
        workers = [
            start_worker(
                "lease", dsn=postgres_dsn, schema=schema, name="race", holder=h, rounds=150
            )
            for h in ("a", "b", "c")
        ]
        for worker in workers:
            assert worker.next_message() == {"ready": True}
        for worker in workers:
            worker.send("go")
        moves = sum(worker.next_message()["moved"] for worker in workers)
        for worker in workers:
            worker.finish()
        state = backend.consumer_state("race")
        assert state is not None
        assert moves > 0
        assert (state.position, state.handled, state.lease_holder) == (moves, moves, None)
    finally:
        backend.close()
