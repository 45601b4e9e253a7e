"""Reconstruction of one entity: cold, with snapshots, at random offsets; and the scaling
curve (the same entity in logs of 10k, 100k and 1M events).

chanlog reconstructs with ``store.reconstruct("channel", id, at=...)``, always passing
``at`` so the inline "current state" shortcut cannot answer: the figure is the replay from
the log (and from the nearest snapshot when snapshots are on). eventsourcing reconstructs
with ``repository.get(id, version=...)``, with and without snapshots taken at the same
interval as chanlog's default policy.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable

from benchmarks import adapters, peer_eventsourcing, workload
from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import TARGET, LogCache, fill
from chanlog import EventStore
from chanlog.backends.memory import MemoryBackend

__all__ = ["cases"]

SNAPSHOT_INTERVAL = 1_000  # chanlog's default every-n-events policy
SEED = 20261124


def _random_offsets(count: int, length: int, repetition: int) -> list[int]:
    """``count`` offsets in ``[1, length]``, the same for both sides of a repetition."""
    rng = random.Random(SEED + repetition)
    return [rng.randint(1, length) for _ in range(count)]


class _ChanlogEntity:
    """One channel of ``events`` events alone in a memory log, with or without snapshots;
    ``unsupported``: the degenerate channel whose peer never countersigns."""

    def __init__(self, events: int, *, snapshots: bool, unsupported: bool = False) -> None:
        self.events = events
        self.snapshots = snapshots
        self.unsupported = unsupported
        self._store: EventStore | None = None

    def store(self) -> EventStore:
        if self._store is None:
            store = adapters.open_store(MemoryBackend(), snapshots=self.snapshots)
            if self.unsupported:
                store.append(workload.channel_created(TARGET))
                for first in range(1, self.events, SNAPSHOT_INTERVAL):
                    count = min(SNAPSHOT_INTERVAL, self.events - first)
                    store.append_batch(workload.signed_states(TARGET, first, count))
            else:
                # Batches of the snapshot interval: the policy then snapshots every 1,000
                # events, as the eventsourcing side does (larger batches space them wider).
                fill(store, self.events, self.events, SNAPSHOT_INTERVAL)
            self._store = store
        return self._store


class _PeerEntity:
    """The same channel in an eventsourcing POPO application."""

    def __init__(self, events: int, *, snapshots: bool, unsupported: bool = False) -> None:
        self.events = events
        self.snapshots = snapshots
        self.unsupported = unsupported
        self._built: tuple[peer_eventsourcing.ChannelApp, uuid.UUID] | None = None

    def app(self) -> tuple[peer_eventsourcing.ChannelApp, uuid.UUID]:
        if self._built is None:
            app = peer_eventsourcing.make_app("popo", snapshots=self.snapshots)
            channel = peer_eventsourcing.new_channel(TARGET)
            for index in range(1, self.events):
                if self.unsupported:
                    peer_eventsourcing.sign(channel, index)
                else:
                    peer_eventsourcing.advance(channel, index)
                if index % 1_000 == 0:
                    app.save(channel)
            app.save(channel)
            if self.snapshots:
                for version in range(SNAPSHOT_INTERVAL, self.events + 1, SNAPSHOT_INTERVAL):
                    app.take_snapshot(channel.id, version=version)
            self._built = (app, channel.id)
        return self._built


def _chanlog_trial(entity: _ChanlogEntity, ops: int, random_offsets: bool) -> Callable[[], float]:
    repetition = iter(range(10**6))

    def trial() -> float:
        store = entity.store()
        length = len(store)
        offsets = (
            _random_offsets(ops, length, next(repetition)) if random_offsets else [length] * ops
        )
        started = time.perf_counter()
        for at in offsets:
            adapters.reconstruct(store, TARGET, at, snapshots=entity.snapshots)
        return time.perf_counter() - started

    return trial


def _peer_trial(entity: _PeerEntity, ops: int, random_offsets: bool) -> Callable[[], float]:
    repetition = iter(range(10**6))

    def trial() -> float:
        app, aggregate_id = entity.app()
        versions = (
            _random_offsets(ops, entity.events, next(repetition))
            if random_offsets
            else [entity.events] * ops
        )
        started = time.perf_counter()
        for version in versions:
            app.repository.get(aggregate_id, version=version)
        return time.perf_counter() - started

    return trial


def _scaling_trial(logs: LogCache, total: int, ops: int) -> Callable[[], float]:
    def trial() -> float:
        # The snapshotted logs the reopen figures use (built once per run); snapshots are not
        # used here, so the figure is the entity's own replay either way.
        path = logs.sqlite(total, min(1_000, total // 2), snapshot=True)
        # No inline projections: opening must not fold the log; the reconstruction folds the
        # entity with a private channel projection.
        with EventStore(adapters.sqlite_backend(path, "normal"), projections=[]) as store:
            length = len(store)
            started = time.perf_counter()
            for _ in range(ops):
                adapters.reconstruct(store, TARGET, length, snapshots=False)
            return time.perf_counter() - started

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """Reconstruction comparisons and the scaling curve."""
    reps = config.reps(5)
    found: list[Case] = []
    for label, events, ops in (("1k", 1_000, 20), ("10k", 10_000, 2)):
        events = config.size(events, events // 10)
        modes = (
            ("cold", "cold, no snapshot", False, False),
            ("snapshot", "with snapshots, latest offset", True, False),
            ("random-offset", "with snapshots, random offsets", True, True),
        )
        cold_chanlog = _ChanlogEntity(events, snapshots=False)
        snap_chanlog = _ChanlogEntity(events, snapshots=True)
        cold_peer = _PeerEntity(events, snapshots=False)
        snap_peer = _PeerEntity(events, snapshots=True)
        for mode, words, snapshots, random_offsets in modes:
            mine = snap_chanlog if snapshots else cold_chanlog
            peer = snap_peer if snapshots else cold_peer
            found.append(
                Case(
                    f"reconstruct.{label}.{mode}",
                    f"reconstruct one entity of {events:,} events, {words}",
                    "latency",
                    ops,
                    [
                        Contender("chanlog", _chanlog_trial(mine, ops, random_offsets)),
                        Contender("eventsourcing", _peer_trial(peer, ops, random_offsets)),
                    ],
                    reps,
                    "chanlog: memory backend, reconstruct(at=...); eventsourcing: POPO, "
                    "repository.get(version=...)"
                    + (
                        f"; snapshots every {SNAPSHOT_INTERVAL:,} events on both sides"
                        if snapshots
                        else ""
                    )
                    + (
                        "; offsets/versions drawn uniformly, the same for both"
                        if random_offsets
                        else ""
                    )
                    + ".",
                )
            )
    events = config.size(1_000, 100)
    found.append(
        Case(
            "reconstruct.1k.unsupported",
            f"reconstruct one never-supported channel of {events:,} events, cold (stress)",
            "latency",
            10,
            [
                Contender(
                    "chanlog",
                    _chanlog_trial(
                        _ChanlogEntity(events, snapshots=False, unsupported=True), 10, False
                    ),
                ),
                Contender(
                    "eventsourcing",
                    _peer_trial(_PeerEntity(events, snapshots=False, unsupported=True), 10, False),
                ),
            ],
            reps,
            "Only our signatures, turn after turn: nothing is ever supported, so no signature "
            "is pruned and the state grows with every event (the peer never answers).",
        )
    )
    for label, total in (("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000)):
        total = config.size(total, total // 100)
        found.append(
            Case(
                f"scaling.{label}",
                f"reconstruct one entity of 1,000 events in a {total:,}-event sqlite log",
                "latency",
                10,
                [Contender("chanlog", _scaling_trial(logs, total, 10))],
                reps,
                "The entity's events are spread evenly over the log; snapshots off, so the "
                "figure is the entity's own replay. The log is built once, before the first "
                "repetition.",
            )
        )
    return found
