"""A child process for the multi-process and crash tests of the sqlite backend.

Usage::

    python sqlite_child.py append PATH WORKER COUNT
        Append COUNT sample events salted with WORKER (singles and batches of three);
        print the offsets as JSON.

    python sqlite_child.py threads PATH SIDE_FILE ROUND THREADS
        Append single events from THREADS threads forever (durability "full", grouped
        commits), recording "A ROUND EVENT_ID OFFSET", fsync'd, once each is acknowledged.

    python sqlite_child.py crash PATH SIDE_FILE ROUND
        Append forever with durability "full" (singles and batches of 1-8), recording in
        SIDE_FILE, fsync'd, the ids of each append before it starts ("I") and its offsets
        once it is acknowledged ("A"). Prints "ready" once the store is open.

    python sqlite_child.py lease PATH HOLDER ROUNDS
        ROUNDS times: take the lease of the consumer "race" (skip the round when another
        holder has it), move it one record forward from the position the lease returned,
        give the lease up. Print how many moves it made.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading

from chanlog.backends import sqlite_wal_reserve
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import LeaseHeld
from chanlog.records import PositionMove
from chanlog.store import EventStore
from chanlog.testing import sample_events


def _append(path: str, worker: str, count: int) -> None:
    events = sample_events(count, salt=f"worker-{worker}:")
    offsets: list[int] = []
    with EventStore(SqliteBackend(path), projections=[]) as store:
        position = 0
        while position < count:
            if position % 4 == 3:
                offsets += store.append_batch(events[position : position + 3])
                position += 3
            else:
                offsets.append(store.append(events[position]))
                position += 1
    print(json.dumps(offsets))


def _record(side: int, line: str) -> None:
    os.write(side, line.encode() + b"\n")
    os.fsync(side)


def _crash(path: str, side_file: str, round_number: int) -> None:
    chooser = random.Random(round_number)
    side = os.open(side_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with EventStore(SqliteBackend(path, durability="full"), projections=[]) as store:
        print("ready", flush=True)
        number = 0
        while True:
            size = 1 if chooser.random() < 0.5 else chooser.randint(1, 8)
            events = sample_events(size, start=number, salt=f"round-{round_number}:")
            number += size
            ids = [event.event_id for event in events]
            _record(side, f"I {round_number} {' '.join(ids)}")
            if size == 1 and chooser.random() < 0.5:
                offsets = [store.append(events[0])]
            else:
                offsets = store.append_batch(events)
            _record(side, f"A {round_number} {' '.join(map(str, offsets))}")


def _threads(path: str, side_file: str, round_number: int, threads: int) -> None:
    """Append single events from ``threads`` threads at once (group commit); record each
    acknowledged ``(event id, offset)`` in SIDE_FILE, fsync'd, once its append returned."""
    side = os.open(side_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with EventStore(SqliteBackend(path, durability="full"), projections=[]) as store:
        start = threading.Barrier(threads + 1)

        def append(thread: int) -> None:
            start.wait()
            number = 0
            while True:
                [event] = sample_events(1, start=number, salt=f"round-{round_number}:{thread}:")
                offset = store.append(event)
                _record(side, f"A {round_number} {event.event_id} {offset}")
                number += 1

        for thread in range(threads):
            threading.Thread(target=append, args=(thread,), daemon=True).start()
        start.wait()
        print("ready", flush=True)
        threading.Event().wait()


def _lease(path: str, holder: str, rounds: int) -> None:
    moved = 0
    backend = SqliteBackend(path, durability="normal")
    try:
        for _ in range(rounds):
            try:
                state = backend.acquire_lease("race", holder, 30.0)
            except LeaseHeld:
                continue
            backend.move_consumer(PositionMove("race", holder, state.position + 1, handled=1))
            moved += 1
            backend.release_lease("race", holder)
    finally:
        backend.close()
    print(json.dumps(moved))


def main(argv: list[str]) -> None:
    """Dispatch on the mode named by the first argument. With ``CHANLOG_TEST_RESERVE_STEPS``
    set to ``START,MOST`` the writer reserves its log in those steps (ADR 0037): many
    reservations in a short run, for a kill to land in."""
    steps = os.environ.get("CHANLOG_TEST_RESERVE_STEPS")
    if steps:
        start, most = (int(value) for value in steps.split(","))
        sqlite_wal_reserve.START, sqlite_wal_reserve.MOST_AT_ONCE = start, most
    mode = argv[0]
    if mode == "append":
        _append(argv[1], argv[2], int(argv[3]))
    elif mode == "crash":
        _crash(argv[1], argv[2], int(argv[3]))
    elif mode == "threads":
        _threads(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif mode == "lease":
        _lease(argv[1], argv[2], int(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
