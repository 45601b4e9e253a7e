"""A child process for the disk-full tests of the sqlite backend.

It appends a generated workload (every projection folding, a snapshot every 50 events) to an
sqlite log until the kernel refuses to let a file grow past ``LIMIT`` bytes (``RLIMIT_FSIZE``:
a full disk that needs no mount), tries a refused append again while the limit holds, lifts
the limit, appends the refused events again and some more, and prints what happened as JSON.

Usage::

    python disk_full_child.py sequential PATH LIMIT
        One caller: single events and batches of up to 12.

    python disk_full_child.py threads PATH LIMIT THREADS
        THREADS callers at once, one event per call (group commit), each its own workload;
        a caller stops at its first refusal.
"""

from __future__ import annotations

import json
import random
import resource
import signal
import sys
import threading
from typing import Any

from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import StorageError
from chanlog.events.base import Event
from chanlog.projections import EntityProjection
from chanlog.snapshots.policies import EveryNEvents
from chanlog.store import EventStore
from chanlog.workload import Workload

AFTER_LIFTING = 200
"""Events appended once the limit is lifted, past the refused ones."""


class Report:
    """What the child saw: the appends acknowledged (event id and offset, in the order they
    returned), the ids of appends refused while the limit held, and the refusals' messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acknowledged: list[tuple[str, int]] = []
        self.refused: list[str] = []
        self.messages: set[str] = set()
        self.lengths: list[tuple[int, int]] = []  # the store's length before and after a refusal

    def ack(self, events: list[Event], offsets: list[int]) -> None:
        with self.lock:
            self.acknowledged += zip((event.event_id for event in events), offsets, strict=True)

    def refuse(self, events: list[Event], error: StorageError, lengths: tuple[int, int]) -> None:
        with self.lock:
            self.refused += [event.event_id for event in events]
            self.messages.add(str(error))
            self.lengths.append(lengths)


def _limit(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def _append(store: EventStore, events: list[Event], report: Report) -> bool:
    before = len(store)
    try:
        offsets = [store.append(events[0])] if len(events) == 1 else store.append_batch(events)
    except StorageError as error:
        report.refuse(events, error, (before, len(store)))
        return False
    report.ack(events, offsets)
    return True


def _sequential(store: EventStore, limit: int, report: Report) -> None:
    events = list(Workload(channels=60, turns=40))
    chooser = random.Random(7)
    position = 0
    _limit(limit)
    refused: list[Event] = []
    while position < len(events) and not refused:
        size = 1 if chooser.random() < 0.5 else chooser.randint(2, 12)
        batch = events[position : position + size]
        if not _append(store, batch, report):
            refused = batch
        position += len(batch)
    if not refused:
        raise SystemExit("the limit never refused an append")
    _append(store, refused, report)  # still full: refused again, nothing written
    _limit(resource.RLIM_INFINITY)
    if not _append(store, refused, report):
        raise SystemExit("the refused batch failed again once the limit was lifted")
    for event in events[position : position + AFTER_LIFTING]:
        _append(store, [event], report)


def _threads(store: EventStore, limit: int, threads: int, report: Report) -> None:
    workloads = [list(Workload(seed=thread, channels=10, turns=30)) for thread in range(threads)]
    done = [0] * threads
    start = threading.Barrier(threads)

    def append(thread: int) -> None:
        start.wait()
        for event in workloads[thread]:
            if not _append(store, [event], report):
                return
            done[thread] += 1

    _limit(limit)
    callers = [threading.Thread(target=append, args=(thread,)) for thread in range(threads)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    _limit(resource.RLIM_INFINITY)
    for thread, events in enumerate(workloads):
        # The refused event first, then the rest of this caller's workload, in order.
        for event in events[done[thread] : done[thread] + AFTER_LIFTING // threads]:
            if not _append(store, [event], report):
                raise SystemExit("an append failed once the limit was lifted")


def _mismatches(store: EventStore, fresh: EventStore) -> tuple[int, list[str]]:
    """How many entities the store holds, and those whose live state differs from what a
    store opened afresh on the same file folds."""
    entities = 0
    differ: list[str] = []
    for name, projection in store.projections.items():
        assert isinstance(projection, EntityProjection)  # as every built-in projection is
        ids = list(projection.ids())
        entities += len(ids)
        if len(fresh.projection(name)) != len(ids):
            differ.append(f"{name}: {len(ids)} entities live, {len(fresh.projection(name))} afresh")
        differ += [
            f"{name} {entity}"
            for entity in ids
            if store.state(name, entity) != fresh.state(name, entity)
        ]
    return entities, differ


def main(argv: list[str]) -> None:
    """Run the scenario named by the first argument and print its report."""
    # A write past the limit raises SIGXFSZ, which kills by default; ignored, the write
    # fails with EFBIG instead, as it fails with ENOSPC on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    mode, path, limit = argv[0], argv[1], int(argv[2])
    report = Report()
    seen: list[int] = []
    policy = EveryNEvents(n=50)
    with EventStore(SqliteBackend(path, durability="full"), snapshot_policy=policy) as store:
        store.subscribe(lambda record: seen.append(record.offset))
        if mode == "sequential":
            _sequential(store, limit, report)
        elif mode == "threads":
            _threads(store, limit, int(argv[3]), report)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        with EventStore(SqliteBackend(path)) as fresh:
            entities, mismatches = _mismatches(store, fresh)
        result: dict[str, Any] = {
            "acknowledged": report.acknowledged,
            "refused": report.refused,
            "messages": sorted(report.messages),
            "lengths": report.lengths,
            "seen": seen,
            "length": len(store),
            "verified": store.verify(),
            "entities": entities,
            "mismatches": mismatches,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
