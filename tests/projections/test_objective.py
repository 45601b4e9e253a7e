"""The objective projection: the seed's cases, every rule, ownership of channels."""

from __future__ import annotations

import pytest

from chanlog import (
    Event,
    EventStore,
    InvalidTransition,
    NotFound,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    ObjectiveRejected,
)
from chanlog.projections import ObjectiveProjection, ObjectiveState

ALICE = "0x" + "a1" * 20
CHANNEL = "0x" + "c1" * 32
OBJECTIVE = "0x" + "0a" * 32
OTHER_OBJECTIVE = "0x" + "0b" * 32


def created(oid: str = OBJECTIVE, channel: str | None = CHANNEL, ts: int = 1) -> ObjectiveCreated:
    return ObjectiveCreated(
        objective_id=oid, objective_type="DirectFund", channel_id=channel, timestamp_ms=ts
    )


def test_created_approved_completed_gives_completed_with_three_events() -> None:
    store = EventStore()
    store.append_batch(
        [
            created(),
            ObjectiveApproved(objective_id=OBJECTIVE, approver=ALICE, timestamp_ms=2),
            ObjectiveCompleted(objective_id=OBJECTIVE, success=True, timestamp_ms=3),
        ]
    )
    state = store.reconstructor.reconstruct("objective", OBJECTIVE)
    assert isinstance(state, ObjectiveState)
    assert (state.status, state.event_count, state.success) == ("completed", 3, True)
    assert (state.created_ms, state.updated_ms, state.terminal_ms) == (1, 3, 3)
    assert state.approver == ALICE and state.is_terminal
    assert store.state("objective", OBJECTIVE.upper().replace("0X", "0x")) == state
    # The same from the log alone (cold, no live projection).
    assert store.reconstruct("objective", OBJECTIVE, at=len(store)) == state


def test_empty_log_gives_not_found() -> None:
    store = EventStore()
    with pytest.raises(NotFound, match="no objective"):
        store.reconstructor.reconstruct("objective", OBJECTIVE)
    with pytest.raises(NotFound):
        store.reconstruct("objective", OBJECTIVE, at=0)
    with pytest.raises(NotFound):
        store.state("objective", OBJECTIVE)


def test_objectives_stay_isolated() -> None:
    store = EventStore()
    store.append_batch(
        [
            created(OBJECTIVE, channel=None),
            created(OTHER_OBJECTIVE, channel=None, ts=2),
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=3),
            ObjectiveRejected(objective_id=OTHER_OBJECTIVE, reason="no", timestamp_ms=4),
        ]
    )
    first = store.reconstruct("objective", OBJECTIVE)
    second = store.reconstruct("objective", OTHER_OBJECTIVE)
    assert (first.status, first.event_count) == ("approved", 2)
    assert (second.status, second.event_count, second.reject_reason) == ("rejected", 2, "no")
    assert len(store.projection("objective")) == 2


def test_thousand_event_objective_reconstructs() -> None:
    events: list[Event] = [created(channel=None)]
    events.append(ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=2))
    events += [
        ObjectiveCranked(objective_id=OBJECTIVE, side_effects_count=i % 3, timestamp_ms=3 + i)
        for i in range(997)
    ]
    events.append(ObjectiveCompleted(objective_id=OBJECTIVE, success=True, timestamp_ms=5000))
    store = EventStore()
    store.append_batch(events)
    state = store.reconstruct("objective", OBJECTIVE, at=len(store))
    assert state.event_count == 1000 and state.crank_count == 997
    assert state.side_effects_total == sum(i % 3 for i in range(997))
    assert state.status == "completed" and state.updated_ms == 5000
    halfway = store.reconstruct("objective", OBJECTIVE, at=500)
    assert halfway.status == "approved" and halfway.event_count == 500


@pytest.mark.parametrize(
    ("prefix", "event", "rule"),
    [
        (
            [],
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=9),
            "objective.requires-created",
        ),
        ([created()], created(ts=9), "objective.created-once"),
        (
            [created(), ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=2)],
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=9),
            "objective.approve-requires-unapproved",
        ),
        (
            [created()],
            ObjectiveCranked(objective_id=OBJECTIVE, side_effects_count=1, timestamp_ms=9),
            "objective.crank-requires-approved",
        ),
        (
            [created()],
            ObjectiveCompleted(objective_id=OBJECTIVE, success=True, timestamp_ms=9),
            "objective.complete-requires-approved",
        ),
        (
            [created(), ObjectiveRejected(objective_id=OBJECTIVE, reason="r", timestamp_ms=2)],
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=9),
            "objective.terminal",
        ),
        (
            [created(), ObjectiveRejected(objective_id=OBJECTIVE, reason="r", timestamp_ms=2)],
            ObjectiveRejected(objective_id=OBJECTIVE, reason="again", timestamp_ms=9),
            "objective.terminal",
        ),
    ],
)
def test_illegal_transitions_are_refused_and_write_nothing(
    prefix: list[Event], event: Event, rule: str
) -> None:
    store = EventStore()
    store.append_batch(prefix)
    before = store.projection("objective").dump()
    with pytest.raises(InvalidTransition) as raised:
        store.append(event)
    error = raised.value
    assert (error.rule, error.kind, error.entity_id) == (rule, "objective", OBJECTIVE)
    assert error.event_type == event.event_type
    assert rule in str(error)
    assert len(store) == len(prefix)
    assert store.projection("objective").dump() == before


def test_rejection_from_approved_is_legal() -> None:
    store = EventStore()
    store.append_batch(
        [
            created(),
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=2),
            ObjectiveRejected(
                objective_id=OBJECTIVE, reason="peer left", error_code="x", timestamp_ms=3
            ),
        ]
    )
    state = store.state("objective", OBJECTIVE)
    assert (state.status, state.reject_code, state.terminal_ms) == ("rejected", "x", 3)


def test_one_objective_owns_a_channel_until_it_finishes() -> None:
    store = EventStore()
    projection = store.projection("objective")
    assert isinstance(projection, ObjectiveProjection)
    store.append_batch([created(), created(OTHER_OBJECTIVE, ts=2)])
    store.append(ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=3))
    assert projection.owner_of(CHANNEL.upper().replace("0X", "0x")) == OBJECTIVE
    with pytest.raises(InvalidTransition) as raised:
        store.append(ObjectiveApproved(objective_id=OTHER_OBJECTIVE, timestamp_ms=4))
    assert raised.value.rule == "objective.channel-owned"
    assert raised.value.entity_id == OTHER_OBJECTIVE
    assert store.state("objective", OTHER_OBJECTIVE).status == "unapproved"
    # Completion releases the channel.
    store.append(ObjectiveCompleted(objective_id=OBJECTIVE, success=True, timestamp_ms=5))
    assert projection.owner_of(CHANNEL) is None
    store.append(ObjectiveApproved(objective_id=OTHER_OBJECTIVE, timestamp_ms=6))
    assert projection.owner_of(CHANNEL) == OTHER_OBJECTIVE


def test_ownership_is_checked_within_one_batch_and_the_batch_is_refused_whole() -> None:
    store = EventStore()
    batch = [
        created(),
        created(OTHER_OBJECTIVE, ts=2),
        ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=3),
        ObjectiveApproved(objective_id=OTHER_OBJECTIVE, timestamp_ms=4),
    ]
    with pytest.raises(InvalidTransition) as raised:
        store.append_batch(batch)
    assert (raised.value.rule, raised.value.index) == ("objective.channel-owned", 3)
    assert len(store) == 0 and len(store.projection("objective")) == 0
    assert store.projection("objective").owner_of(CHANNEL) is None  # type: ignore[attr-defined]


def test_rejection_releases_the_channel() -> None:
    store = EventStore()
    store.append_batch(
        [
            created(),
            created(OTHER_OBJECTIVE, ts=2),
            ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=3),
            ObjectiveRejected(objective_id=OBJECTIVE, reason="gone", timestamp_ms=4),
            ObjectiveApproved(objective_id=OTHER_OBJECTIVE, timestamp_ms=5),
        ]
    )
    assert store.state("objective", OTHER_OBJECTIVE).status == "approved"


def test_reconstruction_does_not_need_the_cross_entity_rule() -> None:
    projection = ObjectiveProjection()
    state = None
    for offset, event in enumerate(
        [created(), ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=2)]
    ):
        state = projection.fold(state, event, OBJECTIVE, offset) or state
    assert state is not None and state.owns_channel
