"""The benchmark workload is legal channel traffic, and both contenders see the same facts."""

from __future__ import annotations

import pytest

from benchmarks import peer_eventsourcing, workload
from chanlog import EventStore, StateReceived, StateSigned, StateSupportedUpdated


def test_channel_traffic_is_accepted_by_a_validating_store_and_prunes() -> None:
    cid = workload.channel_id(5)
    events = workload.channel_events(cid, 0, 1 + 3 * 40)
    kinds = [type(event) for event in events[1:4]]
    assert kinds == [StateSigned, StateReceived, StateSupportedUpdated]
    store = EventStore()
    store.append_batch(events)  # refused if any event were an illegal transition
    state = store.state("channel", cid)
    assert (state.supported_turn, state.latest_turn, state.event_count) == (40, 40, 121)
    assert list(state.signatures) == [40]  # older turns pruned
    assert len({event.event_id for event in events}) == len(events)


def test_the_peer_aggregate_sees_the_same_facts_and_rules() -> None:
    channel = peer_eventsourcing.new_channel(workload.channel_id(5))
    for index in range(1, 1 + 3 * 5):
        peer_eventsourcing.advance(channel, index)
    assert (channel.supported_turn, channel.latest_turn, list(channel.signers)) == (5, 5, ["5"])
    assert channel.version == 1 + 3 * 5
    with pytest.raises(ValueError, match="stale"):
        peer_eventsourcing.sign(channel, 4)
    with pytest.raises(ValueError, match="does not increase"):
        peer_eventsourcing.advance(channel, 3 * 5)  # supporting turn 5 again
    with pytest.raises(ValueError, match="duplicate"):
        peer_eventsourcing.sign(channel, 5)
