"""Durable consumers (DESIGN sections 9 and 10): a consumer handling every record of a log,
its position stored, side by side with eventsourcing 9.5.6 doing the same work.

The work on both sides: count the records by type into a dict, and store how far the
consumer got. chanlog: ``store.bus.consumer(...)`` with the default commit policy (the
position every 100 records or 0.2 s, and at the end), from creating the consumer to its
closing commit. eventsourcing: in memory, a ``ProjectionRunner`` over a POPO application
with a POPO tracking recorder as the view (a tracking record per event, its way of storing
the position); on SQLite, which has no subscriptions in eventsourcing 9.5.6, a process
application pulling from the upstream application (``Follower.pull_and_process``), which
records its tracking in one transaction per event.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.system import ProcessApplication

from benchmarks import adapters, peer_eventsourcing, workload
from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache
from chanlog import EventStore
from chanlog.records import RecordedEvent

__all__ = ["cases"]

_CHANNEL_SIZE = 1_000


# -- chanlog ----------------------------------------------------------------------------------


def _chanlog_consumer(store_of: Callable[[], EventStore], total: int) -> Callable[[], float]:
    """A trial: a new consumer (a name of its own) handles the whole log."""
    names = itertools.count()

    def trial() -> float:
        store = store_of()
        counts: dict[str, int] = {}

        def count(record: RecordedEvent) -> None:
            kind = record.event_type
            counts[kind] = counts.get(kind, 0) + 1

        started = time.perf_counter()
        runner = store.bus.consumer(f"bench-{next(names)}", count, lease_ttl=60.0)
        runner.drain()
        runner.close()
        elapsed = time.perf_counter() - started
        stored = store.bus.consumers.state(runner.name)
        if sum(counts.values()) != total or stored.position != total:
            raise RuntimeError(f"handled {sum(counts.values())}, position {stored.position}")
        return elapsed

    return trial


# -- eventsourcing ----------------------------------------------------------------------------


def _peer_events(app: Any, total: int) -> None:
    """The same channel traffic as the chanlog log: channels of 1,000 events."""
    for number in range(total // _CHANNEL_SIZE):
        channel = peer_eventsourcing.new_channel(workload.channel_id(number + 1))
        for index in range(1, _CHANNEL_SIZE):
            peer_eventsourcing.advance(channel, index)
        app.save(channel)


class _CountsView(POPOTrackingRecorder):
    """The materialised view: counts by event type, with the tracking of each event."""

    expected: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.processed = 0
        self.done = threading.Event()

    def count(self, kind: str, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self._insert_tracking(tracking)
            self.processed += 1
            if self.processed == self.expected:
                self.done.set()


class _CountByType(Projection[_CountsView]):
    """Counts every event of the application by type."""

    name = "countbytype"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.count(type(domain_event).__name__, tracking)


class _Upstream(peer_eventsourcing.ChannelApp):
    """The application the runner subscribes to: its recorder is the prebuilt one (the
    runner constructs its application; building the log is setup, not measured)."""

    prebuilt: ClassVar[Any] = None

    def construct_recorder(self) -> Any:
        return type(self).prebuilt.recorder


def _peer_memory(total: int) -> Callable[[], float]:
    """A trial: a ``ProjectionRunner`` processes the whole POPO application."""
    built: dict[str, Any] = {}

    def trial() -> float:
        if "app" not in built:
            app = peer_eventsourcing.make_app("popo")
            _peer_events(app, total)
            built["app"] = app
        _Upstream.prebuilt = built["app"]
        _CountsView.expected = total
        started = time.perf_counter()
        runner: Any = ProjectionRunner(
            application_class=_Upstream,
            projection_class=_CountByType,
            view_class=_CountsView,
            env={"PERSISTENCE_MODULE": "eventsourcing.popo"},
        )
        with runner:
            view = runner.projection.view
            if not view.done.wait(timeout=600):
                raise RuntimeError(f"processed {view.processed} of {total}")
        elapsed = time.perf_counter() - started
        if sum(view.counts.values()) != total:
            raise RuntimeError(f"counted {sum(view.counts.values())} of {total}")
        return elapsed

    return trial


class _Counter(ProcessApplication[Any]):
    """A process application counting its upstream's events by type (no new events: only
    its tracking records are written)."""

    pull_section_size = 500  # chanlog reads 500 records at a time (eventsourcing: 10)

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        self.counts: dict[str, int] = {}

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        kind = type(domain_event).__name__
        self.counts[kind] = self.counts.get(kind, 0) + 1


class _Sections(peer_eventsourcing.ChannelApp):
    """The upstream application, its notification log served in sections as large as the
    follower pulls (the default is 10 notifications)."""

    log_section_size = _Counter.pull_section_size


def _peer_sqlite(
    upstream_path: Path, path_of: Callable[[], Path], total: int
) -> Callable[[], float]:
    """A trial: a new process application (its own SQLite file) pulls and processes the
    whole upstream SQLite application."""
    built: dict[str, Application[Any]] = {}

    def trial() -> float:
        if "upstream" not in built:
            app = _Sections(
                env={
                    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "SQLITE_DBNAME": str(upstream_path),
                }
            )
            _peer_events(app, total)
            built["upstream"] = app
        upstream = built["upstream"]
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path_of())}
        started = time.perf_counter()
        follower = _Counter(env=env)
        follower.follow(upstream.name, upstream.notification_log)
        follower.pull_and_process(upstream.name)
        elapsed = time.perf_counter() - started
        tracked = follower.recorder.max_tracking_id(upstream.name)
        follower.close()
        if sum(follower.counts.values()) != total or tracked != total:
            raise RuntimeError(f"counted {sum(follower.counts.values())}, tracked {tracked}")
        return elapsed

    return trial


# -- the cases --------------------------------------------------------------------------------


def cases(config: Config, logs: LogCache) -> list[Case]:
    """A consumer over a memory log and over a durable SQLite log."""
    in_memory = config.size(100_000, 5_000)
    on_disk = config.size(10_000, 2_000)
    opened: dict[str, EventStore] = {}

    def memory_store() -> EventStore:
        if "memory" not in opened:
            opened["memory"] = EventStore(logs.memory(in_memory, 1_000), projections=[])
        return opened["memory"]

    def sqlite_store() -> EventStore:
        if "sqlite" not in opened:
            path = logs.sqlite(on_disk, 1_000)
            opened["sqlite"] = EventStore(adapters.sqlite_backend(path, "full"), projections=[])
        return opened["sqlite"]

    counter = itertools.count()
    return [
        Case(
            "bus.memory",
            f"durable consumer, every record of a {in_memory:,}-event log (memory)",
            "throughput",
            in_memory,
            [
                Contender("chanlog", _chanlog_consumer(memory_store, in_memory)),
                Contender("eventsourcing", _peer_memory(in_memory)),
            ],
            config.reps(5),
            "Handler: count records by type into a dict. chanlog: store.bus.consumer + "
            "drain, positions kept by the memory backend (default commit policy); "
            "eventsourcing: ProjectionRunner over a POPO application, the view a POPO "
            "tracking recorder (a tracking record per event).",
        ),
        Case(
            "bus.sqlite",
            f"durable consumer, every record of a {on_disk:,}-event log (sqlite, "
            'durability "full")',
            "throughput",
            on_disk,
            [
                Contender("chanlog", _chanlog_consumer(sqlite_store, on_disk)),
                Contender(
                    "eventsourcing",
                    _peer_sqlite(
                        config.path("es-bus-upstream.db"),
                        lambda: config.path(f"es-bus-follower-{next(counter)}.db"),
                        on_disk,
                    ),
                ),
            ],
            config.reps(3),
            "Handler: count records by type into a dict. chanlog: positions committed "
            "(fsync) every 100 records or 0.2 s and at the end; eventsourcing: a process "
            "application pulling 500 notifications at a time, its tracking record "
            "committed (fsync) with each event, as eventsourcing does; both WAL, "
            "synchronous=FULL.",
        ),
    ]
