"""A damaged snapshot is refused once per store: reconstructions after it neither hash its
bytes again nor log it again, and a row put right (or replaced) is used at once (ADR 0067)."""

from __future__ import annotations

import logging

import pytest

from chanlog import EventStore
from chanlog.backends.memory import MemoryBackend
from chanlog.hashing import keccak256
from chanlog.projections import ChannelProjection
from chanlog.records import StoredSnapshot
from chanlog.snapshots import view
from chanlog.workload import Workload


def _flipped(snapshot: StoredSnapshot) -> StoredSnapshot:
    data = bytearray(snapshot.data)
    data[len(data) // 2] ^= 1
    return StoredSnapshot(
        snapshot.offset, dict(snapshot.versions), bytes(data), snapshot.snapshot_hash
    )


def test_a_damaged_snapshot_is_hashed_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MemoryBackend()
    with EventStore(backend) as writer:
        writer.append_batch(Workload(seed=2, channels=4, turns=3, messages=0).events())
        good = writer.snapshot()
        projection = writer.projection("channel")
        assert isinstance(projection, ChannelProjection)
        channels = sorted(projection.ids())
    damaged = _flipped(good)
    backend.save_snapshot(damaged)
    hashed: list[int] = []

    def counting_keccak256(data: bytes) -> bytes:
        hashed.append(len(data))
        return keccak256(data)

    monkeypatch.setattr(view, "keccak256", counting_keccak256)
    caplog.set_level(logging.WARNING, logger="chanlog.snapshots")
    with EventStore(backend, checkpoint_every=0) as store:
        for _ in range(20):
            for channel in channels:
                store.reconstruct("channel", channel, len(store))
        assert hashed.count(len(damaged.data)) == 1
        ignored = [r for r in caplog.records if f"snapshot at offset {good.offset}" in r.message]
        assert len(ignored) == 1
        loads = store.snapshots.state_loads
        backend.save_snapshot(good)  # put right: the same hash, its own bytes again
        store.reconstruct("channel", channels[0], len(store))
        assert store.snapshots.state_loads == loads + 1
