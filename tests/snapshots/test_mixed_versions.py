"""Two writers of one log during an upgrade: one folds the channel projection at schema
version 1, the other at version 2 (an upgraded plugin), and both take incremental snapshots
by policy and prune. A chain never mixes versions, each reads only its own version's
snapshots, and what each reconstructs at any offset is a replay's (DESIGN section 5)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from chanlog import EventStore, NotFound
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference
from chanlog.workload import Workload
from snapshots.upgraded_channel import channel_host


def _reconstructed(store: EventStore, channel: str, at: int) -> Any:
    try:
        return store.reconstruct("channel", channel, at)
    except NotFound:
        return None


def test_writers_at_two_schema_versions_keep_their_chains_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.db"
    hosts = [channel_host(upgraded=False), channel_host(upgraded=True)]
    writers = [
        EventStore(SqliteBackend(path), plugins=host, snapshot_policy=EveryNEvents(n=30, keep=2))
        for host in hosts
    ]
    writers[0].append_batch(Workload(channels=40, turns=1, seed=8).events())  # idle channels
    traffic = Workload(channels=6, turns=30, seed=4, messages=0, challenge_probability=0).events()
    chooser = random.Random(2)
    position = 0
    while position < len(traffic):
        size = chooser.randint(3, 12)
        chooser.choice(writers).append_batch(traffic[position : position + size])
        position += size
    backend = SqliteBackend(path, read_only=True)
    stored = [backend.latest_snapshot(offset) for offset, _ in backend.snapshot_sizes()]
    by_offset = {snapshot.offset: snapshot for snapshot in stored if snapshot is not None}
    chained = {1: 0, 2: 0}
    for snapshot in by_offset.values():
        reference = base_reference(snapshot)
        if reference is not None:
            assert by_offset[reference[0]].versions == snapshot.versions
            chained[snapshot.versions["channel"]] += 1
    assert chained[1] and chained[2]  # both versions took incremental snapshots
    records = list(backend.read(0, backend.head().length))
    replay = EventStore(MemoryBackend())
    replay.append_batch([writers[0].decode(record).event for record in records])
    channels = sorted(replay.projection("channel").dump()["states"])
    caplog.set_level(logging.WARNING, logger="chanlog")
    for host in hosts:
        with EventStore(backend, plugins=host, read_only=True, checkpoint_every=0) as reader:
            assert reader.verify() == len(records)
            assert reader.snapshots.latest_snapshot() is not None
            for channel in channels:
                assert reader.state("channel", channel) == replay.state("channel", channel)
                for at in chooser.sample(range(len(records) + 1), 8):
                    expected = _reconstructed(replay, channel, at)
                    assert _reconstructed(reader, channel, at) == expected
        backend = SqliteBackend(path, read_only=True)
    assert not caplog.records  # no snapshot was skipped as unreadable
    for store in writers:
        store.close()
    backend.close()


def test_a_chain_whose_snapshot_another_version_took_again_is_not_built_on(
    tmp_path: Path,
) -> None:
    """An upgraded operator's `chanlog snapshot --at` the offset of the node's last snapshot
    replaces it there (it holds other schema versions). Before ADR 0057 the node's next
    snapshot was taken on the one it had stored, checked by offset only, and could not be
    read; now it is taken on the newest one of its versions still stored."""
    path = tmp_path / "log.db"
    policy = EveryNEvents(n=10**9, keep=0)
    node = EventStore(
        SqliteBackend(path), plugins=channel_host(upgraded=False), snapshot_policy=policy
    )
    upgraded = EventStore(SqliteBackend(path), plugins=channel_host(upgraded=True))
    traffic = Workload(channels=2, turns=10, seed=4).events()
    node.append_batch(Workload(channels=30, turns=1, seed=8).events())  # idle channels
    first = node.snapshot()
    node.append_batch(traffic[:5])
    tip = node.snapshot()
    assert base_reference(tip) is not None
    replaced = upgraded.snapshot(tip.offset)
    assert replaced.snapshot_hash != tip.snapshot_hash
    node.append_batch(traffic[5:10])
    taken = node.snapshot()
    with EventStore(SqliteBackend(path), plugins=channel_host(upgraded=False)) as restarted:
        assert restarted.snapshots.latest_snapshot() == taken  # readable
    assert base_reference(taken) == (first.offset, first.snapshot_hash)
    for store in (node, upgraded):
        store.close()
