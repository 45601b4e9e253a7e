"""Durable appends from 8 threads, one event per call (DESIGN section 9, issue 17): chanlog's
group commit (ADR 0029) side by side with eventsourcing's SQLite application driven by the
same 8 threads. Each thread appends its own channel's traffic; a call returns once its event
is durable (``synchronous=FULL`` on both sides). The same comparison runs a second time with
every thread of both contenders kept on one CPU (informational: how much the GIL's hand-offs
between CPUs cost on the machine)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import adapters, peer_eventsourcing, workload
from benchmarks.config import Config
from benchmarks.harness import Case, CaseResult, Contender, skipped_case
from benchmarks.logs import LogCache
from chanlog import EventStore

__all__ = ["THREADS", "cases", "on_one_cpu"]

THREADS = 8
THREADS_TITLE = (
    f'durable sqlite append from {THREADS} threads, one event per call (durability "full")'
)


def _timed(threads: int, work: Callable[[int], None]) -> float:
    """Seconds from the barrier's release until every thread's work is done."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:  # reported after the timing
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    started = time.perf_counter()
    start.wait()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def chanlog_threads(path_of: Callable[[], Path], per_thread: int) -> Callable[[], float]:
    """A trial: a fresh durable store, ``THREADS`` channels, each thread appending its
    channel's events one per call."""

    def trial() -> float:
        store = EventStore(adapters.sqlite_backend(path_of(), "full"))
        cids = [workload.channel_id(10**9 + index) for index in range(THREADS)]
        store.append_batch([workload.channel_created(cid) for cid in cids])

        def append(index: int) -> None:
            cid = cids[index]
            for number in range(1, per_thread + 1):
                store.append(workload.channel_event(cid, number))

        try:
            elapsed = _timed(THREADS, append)
        finally:
            store.close()
        return elapsed

    return trial


def eventsourcing_threads(
    env_of: Callable[[], dict[str, str]], per_thread: int
) -> Callable[[], float]:
    """A trial: eventsourcing's SQLite application, ``THREADS`` aggregates, each thread
    saving its aggregate after every command."""

    def trial() -> float:
        app: Any = peer_eventsourcing.make_app("sqlite", env=env_of())
        channels = [
            peer_eventsourcing.new_channel(workload.channel_id(10**9 + index))
            for index in range(THREADS)
        ]
        app.save(*channels)

        def save(index: int) -> None:
            channel = channels[index]
            for number in range(1, per_thread + 1):
                peer_eventsourcing.advance(channel, number)
                app.save(channel)

        try:
            elapsed = _timed(THREADS, save)
        finally:
            app.close()
        return elapsed

    return trial


def on_one_cpu(trial: Callable[[], float]) -> Callable[[], float]:
    """``trial`` with the threads it starts kept on one CPU (threads inherit the affinity of
    the thread that starts them), the caller's affinity restored afterwards."""

    def pinned() -> float:
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        try:
            return trial()
        finally:
            os.sched_setaffinity(0, allowed)

    return pinned


def cases(config: Config, logs: LogCache) -> list[Case | CaseResult]:
    """The 8-thread comparison."""
    del logs
    per_thread = config.size(150, 15)
    counter = iter(range(10**6))

    def fresh(name: str) -> Callable[[], Path]:
        return lambda: config.path(f"{name}-{next(counter)}.db")

    def es_env() -> dict[str, str]:
        return {
            "SQLITE_DBNAME": str(config.path(f"es-threads-{next(counter)}.db")),
            "SQLITE_LOCK_TIMEOUT": "30",
        }

    chanlog = chanlog_threads(fresh("chanlog-threads"), per_thread)
    peer = eventsourcing_threads(es_env, per_thread)
    one_cpu_title = f"{THREADS_TITLE}, every thread on one CPU"
    one_cpu: Case | CaseResult
    if hasattr(os, "sched_setaffinity"):
        one_cpu = Case(
            "append.sqlite.threads.one-cpu",
            one_cpu_title,
            "throughput",
            THREADS * per_thread,
            [
                Contender("chanlog", on_one_cpu(chanlog)),
                Contender("eventsourcing", on_one_cpu(peer)),
            ],
            config.reps(5),
            "append.sqlite.threads with both contenders' threads kept on one CPU "
            "(sched_setaffinity): Python's threads take turns under the GIL, and on one CPU a "
            "turn never has to wake a thread on another, halted, CPU. Informational: the "
            "target is judged on the row above.",
        )
    else:
        one_cpu = skipped_case(
            "append.sqlite.threads.one-cpu",
            one_cpu_title,
            "throughput",
            "this system cannot set a thread's CPU affinity",
        )
    return [
        Case(
            "append.sqlite.threads",
            THREADS_TITLE,
            "throughput",
            THREADS * per_thread,
            [Contender("chanlog", chanlog), Contender("eventsourcing", peer)],
            config.reps(5),
            f"{THREADS} threads, each its own channel; chanlog groups concurrent commits "
            "(ADR 0029); eventsourcing's SQLite recorder with the same threads.",
        ),
        one_cpu,
    ]
