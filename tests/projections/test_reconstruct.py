"""Reconstruction and time travel: any entity, any offset, at the cost of its own events."""

from __future__ import annotations

import pytest

from chanlog import EventStore, InvalidArgument, NotFound
from chanlog.reconstruct import StateReconstructor
from chanlog.workload import Workload


def test_reconstruction_reads_only_the_entitys_own_events(counting_backend) -> None:  # type: ignore[no-untyped-def]
    workload = Workload(channels=101, turns=20, seed=5, interleave=101, messages=1)
    store = EventStore(counting_backend, checkpoint_every=0)  # the cost of a replay
    for batch in workload.batches(2000):
        store.append_batch(batch)
    target = workload.plans[37].channel_id
    own = sum(1 for _ in store.read_stream(target))
    assert own * 50 < len(store)  # a log shared with 100 other channels
    counting_backend.log_reads = counting_backend.stream_reads = 0
    reconstructor = StateReconstructor(store)
    state = reconstructor.reconstruct("channel", target, at=len(store))
    assert counting_backend.log_reads == 0
    assert counting_backend.stream_reads == own == reconstructor.folded_count
    assert state == store.state("channel", target)


def test_time_travel_matches_a_store_cut_at_that_offset() -> None:
    workload = Workload(channels=4, turns=6, seed=9, challenge_probability=1.0)
    events = workload.events()
    store = EventStore()
    store.append_batch(events)
    for cut in (0, 1, 17, 60, len(events) // 2, len(events)):
        prefix = EventStore()
        prefix.append_batch(events[:cut])
        for plan in workload.plans:
            for kind, entity in (
                ("channel", plan.channel_id),
                ("objective", plan.fund_objective_id),
            ):
                try:
                    expected = prefix.state(kind, entity)
                except NotFound:
                    with pytest.raises(NotFound):
                        store.reconstruct(kind, entity, at=cut)
                    continue
                assert store.reconstruct(kind, entity, at=cut) == expected


def test_bad_arguments_and_unknown_kinds() -> None:
    store = EventStore()
    with pytest.raises(InvalidArgument):
        store.reconstruct("channel", "0x" + "00" * 32, at=-1)
    with pytest.raises(InvalidArgument):
        store.reconstruct("channel", 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.reconstruct(3, "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown kind 'nope'"):
        store.reconstruct("nope", "x")


def test_a_kind_not_folded_inline_is_replayed_privately() -> None:
    workload = Workload(channels=2, turns=2, seed=1, reject_probability=0)
    full = EventStore()
    full.append_batch(workload.events())
    lean = EventStore(projections=["objective"])
    lean.append_batch(workload.events())
    channel = workload.plans[0].channel_id
    assert lean.reconstruct("channel", channel) == full.state("channel", channel)
    with pytest.raises(NotFound):
        lean.state("channel", channel)
