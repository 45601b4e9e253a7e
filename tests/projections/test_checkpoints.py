"""Entity checkpoints: reconstruction at any offset folds at most ``every`` events past the
nearest checkpoint, and a checkpoint is always the state the full fold reaches."""

from __future__ import annotations

import attrs
import pytest

from chanlog import EventStore, InvalidArgument, InvalidTransition
from chanlog.checkpoints import EntityCheckpoints
from chanlog.reconstruct import StateReconstructor
from chanlog.workload import Workload


def test_nearest_finds_the_latest_checkpoint_at_or_before_an_offset() -> None:
    checkpoints = EntityCheckpoints(every=4, limit=100)
    assert checkpoints.nearest("channel", "a", 10) is None
    checkpoints.record("channel", "a", 5, "s5")
    checkpoints.record("channel", "a", 9, "s9")
    checkpoints.record("channel", "a", 7, "s7")  # a reconstruction fills in older history
    checkpoints.record("channel", "a", 7, "again")  # the same checkpoint is kept once
    assert len(checkpoints) == 3
    assert checkpoints.nearest("channel", "a", 4) is None
    assert checkpoints.nearest("channel", "a", 5) == ("s5", 5)
    assert checkpoints.nearest("channel", "a", 8) == ("s7", 7)
    assert checkpoints.nearest("channel", "a", 100) == ("s9", 9)
    assert checkpoints.nearest("objective", "a", 100) is None  # kinds are apart
    checkpoints.clear()
    assert len(checkpoints) == 0 and checkpoints.nearest("channel", "a", 100) is None


def test_the_least_recently_used_entities_lose_their_checkpoints_first() -> None:
    checkpoints = EntityCheckpoints(every=1, limit=4)
    for entity in ("a", "b"):
        checkpoints.record("channel", entity, 1, entity + "1")
        checkpoints.record("channel", entity, 2, entity + "2")
    assert checkpoints.nearest("channel", "a", 2) == ("a2", 2)  # "a" is now the most recent
    checkpoints.record("channel", "c", 1, "c1")
    assert len(checkpoints) == 3
    assert checkpoints.nearest("channel", "b", 2) is None
    assert checkpoints.nearest("channel", "a", 2) == ("a2", 2)


def test_disabled_and_bad_settings() -> None:
    off = EntityCheckpoints(every=0)
    off.record("channel", "a", 1, "s")
    assert not off.enabled and len(off) == 0
    for bad in ({"every": -1}, {"limit": -5}, {"every": 1.5}, {"every": True}):
        with pytest.raises(InvalidArgument, match="checkpoint"):
            EntityCheckpoints(**bad)
    with pytest.raises(InvalidArgument, match="checkpoint every"):
        EventStore(checkpoint_every=-1)


def _channel_store(backend, every: int) -> tuple[EventStore, str]:  # type: ignore[no-untyped-def]
    workload = Workload(channels=3, turns=60, seed=3, messages=0, challenge_probability=0)
    store = EventStore(backend, checkpoint_every=every)
    for batch in workload.batches(97):
        store.append_batch(batch)
    return store, workload.plans[1].channel_id


def test_reconstruction_at_every_offset_folds_at_most_every_events(counting_backend) -> None:  # type: ignore[no-untyped-def]
    store, channel = _channel_store(counting_backend, 8)
    assert len(store.checkpoints) > 10
    cold = StateReconstructor(store, use_snapshots=False)
    first = next(r.offset for r in store.read_stream(channel))
    for at in range(first + 1, len(store) + 1):
        counting_backend.stream_reads = 0
        state = store.reconstruct("channel", channel, at=at)
        assert counting_backend.stream_reads <= 8, at
        assert state == cold.reconstruct("channel", channel, at=at)


def test_a_refused_batch_leaves_no_checkpoint() -> None:
    store, channel = _channel_store(None, 1)
    before = len(store.checkpoints)
    created = next(store.read_stream(channel)).event
    recreate = attrs.evolve(created, timestamp_ms=created.timestamp_ms + 1)
    fresh = Workload(channels=1, turns=3, seed=99, messages=0).events()
    with pytest.raises(InvalidTransition):
        # Legal events first (each would leave a checkpoint), then a second create.
        store.append_batch([*fresh, recreate])
    assert len(store.checkpoints) == before
    store.append_batch(fresh)
    assert len(store.checkpoints) > before


def test_a_restarted_store_earns_checkpoints_as_it_reconstructs(counting_backend) -> None:  # type: ignore[no-untyped-def]
    store, channel = _channel_store(counting_backend, 8)
    store.snapshot()
    restarted = EventStore(counting_backend, checkpoint_every=8)
    assert len(restarted.checkpoints) == 0  # restored from the snapshot: nothing folded yet
    middle = len(store) // 2
    counting_backend.stream_reads = 0
    first = restarted.reconstruct("channel", channel, at=middle)
    long_fold = counting_backend.stream_reads
    assert long_fold > 8 and len(restarted.checkpoints) > 0
    counting_backend.stream_reads = 0
    assert restarted.reconstruct("channel", channel, at=middle) == first
    assert counting_backend.stream_reads < 8
