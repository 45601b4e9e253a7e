"""A separate process for the multi-process tests: ``python pg_worker.py MODE JSON-ARGS``.

It talks JSON lines: it prints ``{"ready": true}`` once its store is open, waits for a ``go``
line on stdin where the mode needs a common start, then reports what it did. Events come from
:mod:`chanlog.testing.events`, which is deterministic, so the parent can predict their ids.

Modes:
    append     append ``count`` events (``batch`` per call; 1 = single appends)
    subscribe  print every record a catch-up subscription delivers, until ``count`` arrived
    conflict   append one event with ``expected_version`` and report the outcome
    pause      commit 3 batches, then stage one more and sleep before committing (to be killed)
    batches    commit batches of ``batch`` events forever (to be killed at any moment)
    lease      ``rounds`` times: take the lease of consumer ``name`` (skip the round when
               another holder has it), move it one record from the position the lease
               returned, give the lease up; report the moves made
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chanlog_postgres import PostgresBackend
from chanlog_postgres.transaction import PostgresTransaction

from chanlog import EventStore
from chanlog.errors import ConcurrencyError, LeaseHeld
from chanlog.events import MessageAcked
from chanlog.records import PositionMove, RecordedEvent
from chanlog.testing.events import sample_events


def say(**message: Any) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def wait_for_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected 'go' on stdin")


class PausingBackend(PostgresBackend):
    """Stops inside the write transaction, after its records were sent to the server and
    before the commit, once ``pause_next_write`` is set: the moment a crash must not leave a
    partial batch behind."""

    pause_next_write = False

    @contextmanager
    def write(self) -> Iterator[PostgresTransaction]:
        with super().write() as transaction:
            yield transaction
            if self.pause_next_write:
                say(staged=True)
                time.sleep(600)


def append(args: dict[str, Any]) -> None:
    backend = PostgresBackend(
        dsn=args["dsn"], schema=args["schema"], durability=args.get("durability", "full")
    )
    events = sample_events(args["count"], salt=f"writer-{args['writer']}:")
    batch = args["batch"]
    with EventStore(backend, projections=[]) as store:
        say(ready=True)
        wait_for_go()
        offsets: list[int] = []
        if batch == 1:
            offsets = [store.append(event) for event in events]
        else:
            for start in range(0, len(events), batch):
                offsets += store.append_batch(events[start : start + batch])
        say(offsets=offsets)


def subscribe(args: dict[str, Any]) -> None:
    backend = PostgresBackend(dsn=args["dsn"], schema=args["schema"])
    done = threading.Event()
    seen = 0

    def deliver(record: RecordedEvent) -> None:
        nonlocal seen
        say(offset=record.offset, event_id=record.event_id)
        seen += 1
        if seen >= args["count"]:
            done.set()

    with EventStore(backend, projections=[]) as store:
        say(ready=True)
        store.subscribe(deliver, from_offset=0)
        if not done.wait(args.get("deadline", 120)):
            raise SystemExit(f"received only {seen} of {args['count']} records")
        say(done=True)


def conflict(args: dict[str, Any]) -> None:
    backend = PostgresBackend(dsn=args["dsn"], schema=args["schema"])
    event = MessageAcked(
        message_id=args["message_id"], peer_id=args["name"], timestamp_ms=1_700_000_000_000
    )
    with EventStore(backend, projections=[]) as store:
        say(ready=True)
        wait_for_go()
        try:
            offset = store.append(event, expected_version=args["expected_version"])
        except ConcurrencyError as exc:
            say(conflict=exc.actual)
        else:
            say(offset=offset)


def pause(args: dict[str, Any]) -> None:
    backend = PausingBackend(dsn=args["dsn"], schema=args["schema"])
    events = sample_events(30 + args["count"], salt="pause:")
    with EventStore(backend, projections=[]) as store:
        for start in range(0, 30, 10):
            store.append_batch(events[start : start + 10])
        say(committed=len(store))
        backend.pause_next_write = True
        store.append_batch(events[30:])
        raise SystemExit("the paused batch was committed")


def batches(args: dict[str, Any]) -> None:
    backend = PostgresBackend(dsn=args["dsn"], schema=args["schema"])
    batch = args["batch"]
    with EventStore(backend, projections=[]) as store:
        number = 0
        while True:
            store.append_batch(sample_events(batch, start=number, salt="batches:"))
            number += batch
            say(committed=number)


def lease(args: dict[str, Any]) -> None:
    backend = PostgresBackend(dsn=args["dsn"], schema=args["schema"], durability="normal")
    name, holder = args["name"], args["holder"]
    moved = 0
    try:
        say(ready=True)
        wait_for_go()
        for _ in range(args["rounds"]):
            try:
                state = backend.acquire_lease(name, holder, 30.0)
            except LeaseHeld:
                continue
            backend.move_consumer(PositionMove(name, holder, state.position + 1, handled=1))
            moved += 1
            backend.release_lease(name, holder)
    finally:
        backend.close()
    say(moved=moved)


MODES = {
    "append": append,
    "subscribe": subscribe,
    "conflict": conflict,
    "pause": pause,
    "batches": batches,
    "lease": lease,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](json.loads(sys.argv[2]))
