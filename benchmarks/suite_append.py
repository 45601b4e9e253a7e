"""Append throughput: in memory and durable sqlite, one event per call and batches of 1,000.

chanlog appends with its default projections (so every event is validated) and one live
subscriber (so every event is notified). eventsourcing saves the same facts through a
``Channel`` aggregate. Both sides construct their events inside the measured loop: building
a validated event is part of appending one. The raw sqlite3 floor gets pre-encoded rows: it
measures the database alone.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import adapters, peer_eventsourcing, workload
from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache
from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.backends.sqlite import WAL_AUTOCHECKPOINT_PAGES, WRITER_CACHE_KIB
from chanlog.backends.sqlite_wal_reserve import fill_with_zeros, log_limit

__all__ = ["RAW_PRAGMAS", "cases", "chanlog_append", "raw_sqlite_append", "reserve_log"]

BATCH = 1_000

RAW_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    f"PRAGMA cache_size = -{WRITER_CACHE_KIB}",
    f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}",
)
"""What chanlog's sqlite writer sets with ``durability="full"`` (DESIGN 9: "the same
pragmas"). The checkpoint interval matters most: until the first checkpoint every commit
grows the WAL file, and an fsync that also records a new file size costs ~85 us more than
one that overwrites a reused WAL (ADR 0016)."""


def chanlog_append(
    make_backend: Callable[[], Backend],
    events: int,
    batch: int | None,
    telemetry: str | None = None,
) -> Callable[[], float]:
    """A trial: a fresh store on ``make_backend()`` with one subscriber appends ``events``
    events of one channel's traffic (:func:`~benchmarks.workload.channel_event`), one per
    call (``batch=None``) or in batches. ``telemetry`` (``"metrics"`` or ``"traces"``):
    the store is instrumented by chanlog-otel with an OpenTelemetry SDK (see
    :func:`otel_host`)."""

    def trial() -> float:
        plugins = None if telemetry is None else otel_host(telemetry)
        store = EventStore(make_backend(), plugins=plugins)
        delivered = itertools.count()
        store.subscribe(lambda _record: next(delivered))
        cid = workload.channel_id(10**9)
        store.append(workload.channel_created(cid))
        try:
            started = time.perf_counter()
            if batch is None:
                for index in range(1, events + 1):
                    store.append(workload.channel_event(cid, index))
            else:
                for first in range(1, events + 1, batch):
                    store.append_batch(workload.channel_events(cid, first, batch))
            elapsed = time.perf_counter() - started
        finally:
            store.close()
        notified = next(delivered)
        if notified != events + 1:  # the figure is only valid if every event was notified
            raise RuntimeError(f"subscriber saw {notified} events, expected {events + 1}")
        return elapsed

    return trial


def otel_host(mode: str) -> Any:
    """A plugin host whose telemetry provider (chanlog-otel's) reports to fresh
    OpenTelemetry SDK providers: a meter provider read by an in-memory reader, and with
    ``mode="traces"`` a tracer provider exporting through a batch span processor. The
    process's global providers stay unset (they can be set only once). Raises ImportError
    without chanlog-otel: the case is then skipped."""
    from chanlog_otel import OtelProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from chanlog.plugins.hookspecs import hookimpl
    from chanlog.plugins.host import PluginHost

    tracer_provider = None
    if mode == "traces":
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    provider = OtelProvider(tracer_provider, MeterProvider([InMemoryMetricReader()]))

    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Callable[[str, Any], None]) -> None:
            register("bench-otel", provider)

    host = PluginHost()
    host.register(Registers(), "bench-otel")
    return host


def eventsourcing_append(
    persistence: str,
    events: int,
    batch: int | None,
    env_of: Callable[[], dict[str, str]] = dict,
) -> Callable[[], float]:
    """A trial: a fresh eventsourcing application (environment from ``env_of()``, called
    per trial so every trial starts on an empty database) saves the same events."""

    def trial() -> float:
        app = peer_eventsourcing.make_app(persistence, env=env_of())
        channel = peer_eventsourcing.new_channel(workload.channel_id(10**9))
        app.save(channel)
        started = time.perf_counter()
        if batch is None:
            for index in range(1, events + 1):
                peer_eventsourcing.advance(channel, index)
                app.save(channel)
        else:
            for first in range(1, events + 1, batch):
                for index in range(first, first + batch):
                    peer_eventsourcing.advance(channel, index)
                app.save(channel)
        elapsed = time.perf_counter() - started
        stored: int = app.repository.get(channel.id).version
        app.close()
        if stored != events + 1:
            raise RuntimeError(f"eventsourcing stored {stored} events, expected {events + 1}")
        return elapsed

    return trial


def reserve_log(database: Path) -> None:
    """Grow ``database``'s write-ahead log with zeros to the size it reaches between two
    checkpoints, and sync it: what chanlog's writer does step by step as its log grows
    (ADR 0037), done whole before the floor's loop, so that none of the floor's commits
    extends the file."""
    limit = log_limit(WAL_AUTOCHECKPOINT_PAGES, 4096)
    descriptor = os.open(f"{database}-wal", os.O_WRONLY)
    try:
        fill_with_zeros(descriptor, os.fstat(descriptor).st_size, limit)
    finally:
        os.close(descriptor)


def raw_sqlite_append(
    path_of: Callable[[], Path], events: int, batch: int | None, *, reserved: bool = True
) -> Callable[[], float]:
    """A trial: plain sqlite3 with the pragmas of chanlog's writer (:data:`RAW_PRAGMAS`)
    inserts the same canonical payloads and ids, pre-encoded, one row per commit or
    ``batch`` rows per commit. With ``reserved`` (chanlog's writer's file handling, the
    floor) its write-ahead log is grown to full size before the loop (:func:`reserve_log`);
    without, every commit of the loop grows the log, as plain sqlite3 does.

    The table is the least an event log can be: a dense position and the payload, plus a
    unique event id (without it a store cannot refuse or recognise a redelivered event).
    """
    cid = workload.channel_id(10**9)
    rows = []
    for offset, index in enumerate(range(1, events + 1)):
        event = workload.channel_event(cid, index)
        rows.append((offset, bytes.fromhex(event.event_id[2:]), event.canonical_json()))

    def trial() -> float:
        path = path_of()
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            for pragma in RAW_PRAGMAS:
                connection.execute(pragma)
            connection.execute(
                "CREATE TABLE events (position INTEGER PRIMARY KEY,"
                " event_id BLOB NOT NULL UNIQUE, payload BLOB NOT NULL)"
            )
            insert = "INSERT INTO events VALUES (?, ?, ?)"
            if reserved:
                reserve_log(path)
            started = time.perf_counter()
            if batch is None:
                for row in rows:
                    connection.execute("BEGIN")
                    connection.execute(insert, row)
                    connection.execute("COMMIT")
            else:
                for first in range(0, events, batch):
                    connection.execute("BEGIN")
                    connection.executemany(insert, rows[first : first + batch])
                    connection.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            connection.close()

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """The append comparisons."""
    single = config.size(5_000, 300)
    batched = config.size(20_000, 2_000)
    durable_single = config.size(1_000, 50)
    durable_batched = config.size(20_000, 2_000)
    reps = config.reps(7)

    def memory() -> Backend:
        from chanlog.backends.memory import MemoryBackend

        return MemoryBackend()

    def durable() -> Backend:
        return adapters.sqlite_backend(config.path("chanlog-append.db"), "full")

    def es_sqlite(tag: str) -> Callable[[], dict[str, str]]:
        return lambda: {"SQLITE_DBNAME": str(config.path(f"es-append-{tag}.db"))}

    return [
        Case(
            "append.memory.single",
            "append in memory, one event per call (validated, notified)",
            "throughput",
            single,
            [
                Contender("chanlog", chanlog_append(memory, single, None)),
                Contender("eventsourcing", eventsourcing_append("popo", single, None)),
            ],
            reps,
            "chanlog: default projections + 1 subscriber; eventsourcing: POPO application, "
            "aggregate command + save per event; both build their events in the loop.",
        ),
        Case(
            "append.memory.telemetry",
            "append in memory, one event per call, instrumented (chanlog-otel)",
            "throughput",
            single,
            [
                Contender("chanlog", chanlog_append(memory, single, None)),
                Contender("otel metrics", chanlog_append(memory, single, None, "metrics")),
                Contender("otel metrics+traces", chanlog_append(memory, single, None, "traces")),
            ],
            reps,
            "append.memory.single's chanlog, uninstrumented (chanlog-otel installed, no SDK: "
            "nothing attaches) and with an OpenTelemetry SDK configured: metrics only, and "
            "metrics with a span per append and per commit (ADR 0035). Skipped without "
            "chanlog-otel.",
        ),
        Case(
            "append.memory.batch",
            f"append in memory, batches of {BATCH:,} (validated, notified)",
            "throughput",
            batched,
            [
                Contender("chanlog", chanlog_append(memory, batched, BATCH)),
                Contender("eventsourcing", eventsourcing_append("popo", batched, BATCH)),
            ],
            reps,
            "chanlog: append_batch; eventsourcing: 1,000 commands then one save.",
        ),
        Case(
            "append.sqlite.single",
            'durable sqlite append, one event per commit (durability "full")',
            "throughput",
            durable_single,
            [
                Contender("chanlog", chanlog_append(durable, durable_single, None)),
                Contender(
                    "raw sqlite3",
                    raw_sqlite_append(lambda: config.path("raw-append.db"), durable_single, None),
                ),
                Contender(
                    "raw sqlite3, growing log",
                    raw_sqlite_append(
                        lambda: config.path("raw-append-growing.db"),
                        durable_single,
                        None,
                        reserved=False,
                    ),
                ),
                Contender(
                    "eventsourcing",
                    eventsourcing_append("sqlite", durable_single, None, es_sqlite("single")),
                ),
            ],
            reps,
            "All: WAL, synchronous=FULL (fsync per commit), files on the same ext4 disk;"
            " raw sqlite3 with chanlog's writer pragmas (cache_size, wal_autocheckpoint) and"
            " its write-ahead log grown to full size before the loop (chanlog grows its own"
            " ahead of its commits, ADR 0037); 'growing log': the same without that, so"
            " every commit extends the file.",
        ),
        Case(
            "append.sqlite.batch",
            f'durable sqlite append, batches of {BATCH:,} per commit (durability "full")',
            "throughput",
            durable_batched,
            [
                Contender("chanlog", chanlog_append(durable, durable_batched, BATCH)),
                Contender(
                    "raw sqlite3",
                    raw_sqlite_append(
                        lambda: config.path("raw-append-batch.db"), durable_batched, BATCH
                    ),
                ),
                Contender(
                    "eventsourcing",
                    eventsourcing_append("sqlite", durable_batched, BATCH, es_sqlite("batch")),
                ),
            ],
            reps,
            "raw sqlite3: executemany of 1,000 pre-encoded rows per commit.",
        ),
    ]
