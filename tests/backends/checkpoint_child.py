"""A child process for the checkpoint tests of the sqlite backend: it writes large batches,
so SQLite checkpoints its write-ahead log into the main file often.

Usage::

    python checkpoint_child.py crash PATH SIDE_FILE ROUND
        Append batches of BATCH events of about 4 KB each forever with durability "full",
        recording in SIDE_FILE, fsync'd, the ids of each batch before it starts ("I") and
        its offsets once it is acknowledged ("A"), like sqlite_child.py's crash mode.
        Prints "ready" once the store is open.

    python checkpoint_child.py write PATH STOP_FILE
        Append such batches until STOP_FILE exists, and after every batch ask for a passive
        checkpoint from a second, plain sqlite3 connection, so the main file is caught short
        of its header often and the log is reset under readers. Prints "ready" once the
        store is open and, at the end, the number of batches written.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from chanlog.backends.sqlite import SqliteBackend
from chanlog.events import MessageDropped
from chanlog.store import EventStore
from chanlog.testing.events import bytes32_of

BATCH = 500
REASON_LENGTH = 3_900  # with the other fields, about 4 KB of canonical JSON per event


def big_events(count: int, *, start: int, salt: str) -> list[MessageDropped]:
    """``count`` valid events of about 4 KB, numbered from ``start``: deterministic, so the
    parent can predict their ids."""
    events = []
    for number in range(start, start + count):
        words = f"{salt}dropped {number} "
        reason = (words * (REASON_LENGTH // len(words) + 1))[:REASON_LENGTH]
        events.append(
            MessageDropped(
                message_id=bytes32_of(f"{salt}drop:{number}"),
                peer_id=f"peer-{number % 5}",
                reason=reason,
                error_code="payload_invalid",
                payload_size_bytes=number,
                timestamp_ms=1_700_000_000_000 + number,
            )
        )
    return events


def _record(side: int, line: str) -> None:
    os.write(side, line.encode() + b"\n")
    os.fsync(side)


def _crash(path: str, side_file: str, round_number: int) -> None:
    side = os.open(side_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with EventStore(SqliteBackend(path, durability="full"), projections=[]) as store:
        print("ready", flush=True)
        number = 0
        while True:
            events = big_events(BATCH, start=number, salt=f"round-{round_number}:")
            number += BATCH
            _record(side, f"I {round_number} {' '.join(event.event_id for event in events)}")
            offsets = store.append_batch(events)
            _record(side, f"A {round_number} {' '.join(map(str, offsets))}")


def _write(path: str, stop_file: str) -> None:
    batches = 0
    with EventStore(SqliteBackend(path, durability="full"), projections=[]) as store:
        checkpointer = sqlite3.connect(path, isolation_level=None)
        try:
            print("ready", flush=True)
            while not Path(stop_file).exists():
                store.append_batch(big_events(BATCH, start=batches * BATCH, salt="writer:"))
                batches += 1
                checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            checkpointer.close()
    print(batches, flush=True)


def main(argv: list[str]) -> None:
    """Dispatch on the mode named by the first argument."""
    mode = argv[0]
    if mode == "crash":
        _crash(argv[1], argv[2], int(argv[3]))
    elif mode == "write":
        _write(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
