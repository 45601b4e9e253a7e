"""A restore keeps entity states deferred until first use, with the same results."""

from __future__ import annotations

from chanlog import Event, EventStore
from chanlog.backends.memory import MemoryBackend
from chanlog.projections import ChannelProjection, DeferredState
from chanlog.workload import Workload, WorkloadConfig


def _restored() -> tuple[list[Event], EventStore, EventStore]:
    """The workload's events, a store holding their first half plus a snapshot, and a
    second store opened on the same backend (so restored from that snapshot)."""
    events = list(Workload(WorkloadConfig(seed=11, channels=6, turns=12)).events())
    backend = MemoryBackend()
    original = EventStore(backend)
    original.append_batch(events[: len(events) // 2])
    original.snapshot()
    return events, original, EventStore(backend)


def test_restore_defers_states_and_resolves_them_on_first_use() -> None:
    _, original, reopened = _restored()
    channels = reopened.projection("channel")
    assert isinstance(channels, ChannelProjection)
    deferred = [key for key, state in channels._states.items() if isinstance(state, DeferredState)]
    assert deferred and len(deferred) == len(channels)  # nothing built yet
    first = deferred[0]
    assert reopened.state("channel", first) == original.state("channel", first)
    assert not isinstance(channels._states[first], DeferredState)  # built once, kept
    assert isinstance(channels._states[deferred[1]], DeferredState)  # the others still wait
    # A dump of a partly deferred projection equals the original's, byte for byte.
    assert channels.dump() == original.projection("channel").dump()
    assert len(channels) == len(original.projection("channel"))


def test_appending_over_deferred_states_matches_a_store_that_never_restored() -> None:
    events, _, reopened = _restored()
    reopened.append_batch(events[len(events) // 2 :])
    straight = EventStore()
    straight.append_batch(events)
    for name in ("objective", "channel", "messages"):
        assert reopened.projection(name).dump() == straight.projection(name).dump()
    restored, folded = reopened.projection("channel"), straight.projection("channel")
    assert isinstance(restored, ChannelProjection) and isinstance(folded, ChannelProjection)
    assert restored.states() == folded.states()
