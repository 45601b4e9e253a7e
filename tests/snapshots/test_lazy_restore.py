"""A restore keeps entity states deferred until first use, with the same results."""

from __future__ import annotations

from chanlog import Event, EventStore, MemoryBackend, Workload, WorkloadConfig
from chanlog.projections import DeferredState


def _events() -> list[Event]:
    return list(Workload(WorkloadConfig(seed=11, channels=6, turns=12)).events())


def test_restore_defers_states_and_resolves_them_on_first_use() -> None:
    events = _events()
    half = len(events) // 2
    backend = MemoryBackend()
    original = EventStore(backend)
    original.append_batch(events[:half])
    original.snapshot()
    reopened = EventStore(backend)
    channels = reopened.projection("channel")
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
    events = _events()
    half = len(events) // 2
    backend = MemoryBackend()
    first = EventStore(backend)
    first.append_batch(events[:half])
    first.snapshot()
    reopened = EventStore(backend)
    reopened.append_batch(events[half:])
    straight = EventStore()
    straight.append_batch(events)
    for name in ("objective", "channel", "messages"):
        assert reopened.projection(name).dump() == straight.projection(name).dump()
    assert reopened.projection("channel").states() == straight.projection("channel").states()
