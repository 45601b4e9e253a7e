"""Whole-log work: read and decode everything, verify the hash chain, reopen a big log."""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks import adapters, peer_eventsourcing, workload
from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache
from chanlog import EventStore

__all__ = ["cases"]


def _chanlog_read(store_of: Callable[[], EventStore], total: int) -> Callable[[], float]:
    def trial() -> float:
        store = store_of()
        started = time.perf_counter()
        count = sum(1 for _ in store.read_from(0))
        elapsed = time.perf_counter() - started
        if count != total:
            raise RuntimeError(f"read {count} records, expected {total}")
        return elapsed

    return trial


def _chanlog_verify(store_of: Callable[[], EventStore], total: int) -> Callable[[], float]:
    def trial() -> float:
        store = store_of()
        started = time.perf_counter()
        checked = store.verify()
        elapsed = time.perf_counter() - started
        if checked != total:
            raise RuntimeError(f"verified {checked} records, expected {total}")
        return elapsed

    return trial


class _PeerLog:
    """The same amount of channel traffic in an eventsourcing POPO application."""

    def __init__(self, total: int, channel_size: int = 1_000) -> None:
        self.total = total
        self.channel_size = channel_size
        self._app: peer_eventsourcing.ChannelApp | None = None

    def app(self) -> peer_eventsourcing.ChannelApp:
        if self._app is None:
            app = peer_eventsourcing.make_app("popo")
            for number in range(self.total // self.channel_size):
                channel = peer_eventsourcing.new_channel(workload.channel_id(number + 1))
                for index in range(1, self.channel_size):
                    peer_eventsourcing.advance(channel, index)
                app.save(channel)
            self._app = app
        return self._app


def _peer_read(log: _PeerLog) -> Callable[[], float]:
    def trial() -> float:
        app = log.app()
        started = time.perf_counter()
        notifications = app.recorder.select_notifications(start=1, limit=log.total)
        count = 0
        for notification in notifications:
            app.mapper.to_domain_event(notification)
            count += 1
        elapsed = time.perf_counter() - started
        if count != log.total:
            raise RuntimeError(f"read {count} notifications, expected {log.total}")
        return elapsed

    return trial


def _reopen(logs: LogCache, total: int, target_events: int) -> Callable[[], float]:
    def trial() -> float:
        path = logs.sqlite(total, target_events, snapshot=True)
        started = time.perf_counter()
        store = EventStore(adapters.sqlite_backend(path, "full"))
        length = len(store)
        elapsed = time.perf_counter() - started
        restored = store.snapshots.opened_count
        store.close()
        if length != total + 1:  # the log ends with its snapshot-created event
            raise RuntimeError(f"reopened log holds {length} events, expected {total + 1}")
        if restored != 1:
            raise RuntimeError("reopening did not restore from the snapshot")
        return elapsed

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """Read, verify and reopen figures."""
    reps = config.reps(5)
    total = config.size(100_000, 5_000)
    big = config.size(1_000_000, 20_000)
    target = min(1_000, total // 2)
    peer_log = _PeerLog(total)

    opened: dict[str, EventStore] = {}

    # One reader store per backend for all repetitions: opening one folds the log, which is
    # setup here (the reopen rows measure it).
    def memory_store() -> EventStore:
        if "memory" not in opened:
            opened["memory"] = EventStore(logs.memory(total, target), projections=[])
        return opened["memory"]

    def sqlite_store() -> EventStore:
        if "sqlite" not in opened:
            backend = adapters.sqlite_backend(logs.sqlite(total, target), "full")
            opened["sqlite"] = EventStore(backend, projections=[])
        return opened["sqlite"]

    return [
        Case(
            "log.read.memory",
            f"read and decode the whole log ({total:,} events, memory)",
            "throughput",
            total,
            [
                Contender("chanlog", _chanlog_read(memory_store, total)),
                Contender("eventsourcing", _peer_read(peer_log)),
            ],
            reps,
            "chanlog: read_from(0), every record decoded to its event; eventsourcing: "
            "select_notifications + mapper.to_domain_event over the same amount of "
            "channel traffic.",
        ),
        Case(
            "log.read.sqlite",
            f"read and decode the whole log ({total:,} events, sqlite)",
            "throughput",
            total,
            [Contender("chanlog", _chanlog_read(sqlite_store, total))],
            reps,
        ),
        Case(
            "log.verify.memory",
            f"verify ids and hash chain ({total:,} events, memory)",
            "throughput",
            total,
            [Contender("chanlog", _chanlog_verify(memory_store, total))],
            reps,
            "eventsourcing has no content addresses or hash chain to compare with.",
        ),
        Case(
            "log.verify.sqlite",
            f"verify ids and hash chain ({total:,} events, sqlite)",
            "throughput",
            total,
            [Contender("chanlog", _chanlog_verify(sqlite_store, total))],
            reps,
        ),
        Case(
            "log.reopen.100k",
            f"reopen a {total:,}-event sqlite log, ready (default projections)",
            "latency",
            1,
            [Contender("chanlog", _reopen(logs, total, target))],
            reps,
        ),
        Case(
            "log.reopen.1m",
            f"reopen a {big:,}-event sqlite log, ready (default projections)",
            "latency",
            1,
            [Contender("chanlog", _reopen(logs, big, min(1_000, big // 2)))],
            config.reps(1),
            "Opening the store with its default projections (ready: every entity's current "
            "state loaded) and reading its length; one repetition. The log was built the way "
            "a node builds it: through a store with the default projections that took a "
            "snapshot at the end, so opening loads that snapshot and replays the tail.",
        ),
    ]
