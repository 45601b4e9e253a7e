"""A node's life on a log, killed (SIGKILL, by itself) at one chosen point: the child
process of :mod:`backends.crash_points`.

Usage::

    python crash_points_child.py BACKEND_JSON SIDE_FILE KILL_AT

BACKEND_JSON is the ``[backend]`` table, as JSON. The points are counted in order: every
SQL statement the process starts (SQLite's trace hook, called before the statement runs;
for PostgreSQL, each ``execute``, ``executemany``, ``copy`` and ``commit`` of psycopg,
before it is sent), and every call that changes files from Python (``os.write``,
``os.fsync``, ``os.replace``, ``os.rename``, ``os.unlink``, ``os.ftruncate``). At point
``KILL_AT`` the process kills itself before the call, as an OOM kill would. ``KILL_AT = -1``
kills nothing and prints how many points the life passed.

The life: a new log is created; single appends, batches, grouped appends from four
threads; snapshots taken by the policy and by hand, then pruned; a durable consumer drained
with commits every few records; the store closed (the head witness written) and opened
again, and more appended. SIDE_FILE gets, fsync'd with functions that count no point, "I"
and the ids of each append before it starts, and "A" and its ids once acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import chanlog
from chanlog.events import Event, MessageDropped
from chanlog.records import RecordedEvent
from chanlog.testing.events import bytes32_of
from chanlog.workload import Workload, WorkloadConfig

DROP_REASON = "dropped by the crash points' consumer"
"""The reason of the ``dropper`` consumer's drops (the workload drops messages of its own)."""

_write = os.write
_fsync = os.fsync
_lock = threading.Lock()
_passed = 0
_kill_at = -1
_trail: list[str] | None = None


def _point(what: str) -> None:
    global _passed
    with _lock:
        _passed += 1
        if _trail is not None:
            _trail.append(what[:160])
        if _passed == _kill_at:
            _write(2, f"killed at point {_passed}: {what}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)


def _counted(function: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        _point(f"os.{function.__name__}{args[:1]!r}")
        return function(*args, **kwargs)

    return counted


def count_points(kill_at: int, trail: list[str] | None = None) -> None:
    """Count the points this process passes from now on, and kill it at point ``kill_at``
    (-1: never); ``trail`` gets what each point is (for a child that picks its points)."""
    global _kill_at, _trail
    _kill_at, _trail = kill_at, trail
    for name in ("write", "fsync", "replace", "rename", "unlink", "ftruncate"):
        setattr(os, name, _counted(getattr(os, name)))
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = connect(*args, **kwargs)
        connection.set_trace_callback(_point)
        return connection

    sqlite3.connect = traced  # type: ignore[assignment]
    try:
        import psycopg
    except ImportError:
        return
    for owner, names in (
        (psycopg.Connection, ("execute", "commit")),
        (psycopg.Cursor, ("execute", "executemany", "copy")),
    ):
        for name in names:
            original = getattr(owner, name)
            setattr(owner, name, _counted_method(original, f"psycopg {name}"))


def _counted_method(function: Callable[..., Any], what: str) -> Callable[..., Any]:
    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        _point(f"{what} {str(args[:1])[:160]}")
        return function(self, *args, **kwargs)

    return counted


class _Side:
    """What was asked and what was acknowledged, durably, outside the counted points."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def line(self, kind: str, ids: list[str]) -> None:
        with self._lock:
            _write(self._fd, f"{kind} {' '.join(ids)}\n".encode())
            _fsync(self._fd)


def _append(store: chanlog.EventStore, side: _Side, events: list[Any]) -> None:
    ids = [event.event_id for event in events]
    side.line("I", ids)
    if len(events) == 1:
        store.append(events[0])
    else:
        store.append_batch(events)
    side.line("A", ids)


def config(backend: dict[str, Any]) -> dict[str, Any]:
    """The node's configuration on ``backend`` (the ``[backend]`` table)."""
    return {
        "backend": backend,
        "snapshots": {"policy": "every-n-events", "n": 12, "keep": 2},
    }


def life(backend: dict[str, Any], side_path: str) -> None:
    """The node's life (see the module's docstring)."""
    side = _Side(side_path)
    events = Workload(WorkloadConfig(seed=5, channels=3, turns=6)).events()
    first, later = events[:30], events[30:]
    # One channel per thread: the threads' order across channels does not matter.
    grouped = [
        Workload(WorkloadConfig(seed=50 + n, channels=1, turns=1)).events() for n in range(4)
    ]
    with chanlog.open(config(backend)) as store:
        for event in first[:10]:
            _append(store, side, [event])
        for start in range(10, len(first), 5):
            _append(store, side, first[start : start + 5])

        def append_one_by_one(part: list[Event]) -> None:
            for event in part:
                _append(store, side, [event])

        threads = [threading.Thread(target=append_one_by_one, args=(part,)) for part in grouped]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        store.snapshot()
        store.prune_snapshots(1)
        _consume(store)
    with chanlog.open(config(backend)) as store:
        for start in range(0, len(later), 7):
            _append(store, side, later[start : start + 7])
        _consume(store)


def drop_for(record: RecordedEvent) -> list[MessageDropped]:
    """What the ``dropper`` consumer appends for ``record``: for every fifth record that is
    not one of its own, a drop whose timestamp (hence id) differs at each call, so that a
    record handled twice would leave two drops of one message id."""
    if record.offset % 5 or record.event_type == "message-dropped":
        return []
    return [
        MessageDropped(
            message_id=bytes32_of(f"drop:{record.offset}"),
            peer_id="peer-1",
            reason=DROP_REASON,
            error_code="payload_invalid",
            timestamp_ms=time.time_ns() // 1000,
        )
    ]


def _consume(store: chanlog.EventStore) -> None:
    """Drain the ``audit`` consumer (a position commit every four records) and the
    ``dropper`` (its appends committed with its position)."""
    for name, handler in (("audit", lambda record: None), ("dropper", drop_for)):
        with store.bus.consumer(name, handler, commit_every=4, lease_ttl=0.5) as runner:
            runner.drain()


def main() -> None:
    backend, side_path, kill_at = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    count_points(kill_at)
    life(backend, side_path)
    print(_passed)


if __name__ == "__main__":
    main()
