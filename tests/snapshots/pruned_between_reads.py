"""A reader of snapshots whose base another writer prunes between two of its reads: it has
read an incremental snapshot, and the snapshot it is taken on is gone when it reads that one.
It falls back to an older snapshot or to replay, and its state is a replay's. Shared by the
backends' tests (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.events import StateSigned
from chanlog.records import StoredSnapshot
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference
from chanlog.store import EventStore
from chanlog.workload import Workload

__all__ = ["PrunedBetweenReads", "read_while_pruned"]


class PrunedBetweenReads:
    """``backend`` as a reader sees it: once :meth:`arm`-ed, the first incremental snapshot
    it reads is handed over only after ``meanwhile`` ran (another writer's prune)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._meanwhile: Callable[[], None] | None = None
        self.handed: list[int] = []

    def arm(self, meanwhile: Callable[[], None]) -> None:
        self._meanwhile = meanwhile

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        snapshot = self._backend.latest_snapshot(before)
        if snapshot is not None and base_reference(snapshot) is not None and self._meanwhile:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
            self.handed.append(snapshot.offset)
        return snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def _replayed(store: EventStore, end: int) -> EventStore:
    replay = EventStore(MemoryBackend())
    replay.append_batch([record.event for record in store.read_range(0, end)])
    return replay


def read_while_pruned(node: Backend, other: Backend, reader: Backend, *, opening: bool) -> None:
    """``node`` takes a chain (a whole snapshot, one incremental on it); ``reader``
    reconstructs a channel at the incremental one (or, ``opening``, opens a store on the
    log), and between its read of that snapshot and of its base, ``other`` snapshots the
    end of the log and prunes both. Three handles on one log."""
    writer = EventStore(node, snapshot_policy=EveryNEvents(n=10**9, keep=0), checkpoint_every=0)
    pruner = EventStore(other, snapshot_policy=EveryNEvents(n=10**9, keep=0, incremental=False))
    traffic = Workload(channels=2, turns=8, seed=4).events()
    writer.append_batch(Workload(channels=30, turns=1, seed=8).events())  # idle channels
    writer.append_batch(traffic[:10])
    base = writer.snapshot()
    writer.append_batch(traffic[10:20])
    chained = writer.snapshot()
    assert base_reference(chained) == (base.offset, base.snapshot_hash)
    signed = traffic[10]
    assert isinstance(signed, StateSigned)
    channel = signed.channel_id

    def prune() -> None:
        pruner.append_batch(traffic[20:30])
        pruner.snapshot()
        assert {base.offset, chained.offset} <= set(pruner.prune_snapshots(keep=1))

    interleaved = PrunedBetweenReads(reader)
    if opening:  # restores from the newest snapshot, then folds the tail
        end = reader.head().length
        interleaved.arm(prune)
        with EventStore(interleaved, read_only=True) as opened:
            assert interleaved.handed == [chained.offset]
            # What it folded on opening: the log as it was then.
            folded = opened.projection("channel").get(channel)
            assert folded == _replayed(opened, end).state("channel", channel)
            # "Now" also folds what the pruner appended meanwhile (ADR 0060).
            now = _replayed(opened, len(opened)).state("channel", channel)
            assert opened.reconstruct("channel", channel) == now
        return
    # No inline projections: nothing is restored on opening, the reconstruction reads.
    with EventStore(interleaved, projections=[], read_only=True, checkpoint_every=0) as store:
        interleaved.arm(prune)
        at = chained.offset + 1
        state = store.reconstruct("channel", channel, at)
        assert interleaved.handed == [chained.offset]
        assert state == _replayed(store, at).reconstruct("channel", channel, at)
