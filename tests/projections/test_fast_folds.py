"""What the fast folds must keep: the flat public shape of the states, the snapshot format,
the cross-entity rules of the staging overlay, and costs proved by counting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from chanlog import ChannelCreated, InvalidTransition, ObjectiveCreated, StateSigned
from chanlog.events.base import Event
from chanlog.projections import (
    ChannelProjection,
    ChannelState,
    EntityProjection,
    EntityStage,
    MessagesProjection,
    ObjectiveProjection,
)
from chanlog.projections.channel import ChannelTerms, TurnSignatures
from chanlog.workload import Workload, WorkloadConfig

ALICE = "0x" + "A1" * 20
BOB = "0x" + "b0" * 20
CHANNEL = "0x" + "c7" * 32
SIG = "0x" + "ab" * 65

FLAT_CHANNEL_FIELDS = [
    "channel_id",
    "participants",
    "channel_nonce",
    "app_definition",
    "challenge_duration",
    "latest_turn",
    "latest_signed_turn",
    "supported_turn",
    "supported_hash",
    "signatures",
    "final_turn",
    "final_state_hash",
    "holdings",
    "deposited",
    "withdrawn",
    "chain_position",
    "challenge",
    "turn_num_record",
    "concluded",
    "concluded_at_turn",
    "event_count",
    "created_ms",
    "updated_ms",
]


def workload_events() -> list[Event]:
    return list(Workload(WorkloadConfig(seed=11, channels=6, turns=12)))


def fold_all(projection: EntityProjection[Any], events: Iterable[Event]) -> None:
    for offset, event in enumerate(events):
        stage = projection.stage()
        stage.apply(event, offset)
        stage.commit()


def created(ts: int = 1) -> ChannelCreated:
    return ChannelCreated(
        channel_id=CHANNEL, participants=[ALICE, BOB], challenge_duration=60, timestamp_ms=ts
    )


def signed(turn: int, signer: str = ALICE) -> StateSigned:
    return StateSigned(
        channel_id=CHANNEL,
        turn_num=turn,
        state_hash="0x" + f"{turn:064x}",
        signer=signer,
        signature=SIG,
        timestamp_ms=10 + turn,
    )


def test_channel_state_keeps_its_flat_read_only_shape() -> None:
    projection = ChannelProjection()
    fold_all(projection, workload_events())
    for state in projection.states().values():
        dumped = projection.dump_state(state)
        assert list(dumped) == FLAT_CHANNEL_FIELDS  # the snapshot format is unchanged
        for name in FLAT_CHANNEL_FIELDS:
            assert getattr(state, name) is not None or dumped[name] is None
            with pytest.raises(AttributeError):
                setattr(state, name, None)
        assert projection.load_state(dumped) == state


def test_every_state_survives_a_snapshot_round_trip() -> None:
    events = workload_events()
    for projection in (ChannelProjection(), ObjectiveProjection(), MessagesProjection()):
        fold_all(projection, events)
        fresh = type(projection)()
        fresh.load(projection.dump())
        assert fresh.states() == projection.states()
        assert fresh.dump() == projection.dump()


def test_a_state_built_by_hand_with_a_plain_dict_still_folds() -> None:
    terms = ChannelTerms(
        channel_id=CHANNEL,
        participants=(ALICE, BOB),
        participant_keys=frozenset({ALICE.lower(), BOB}),
        channel_nonce=None,
        app_definition=None,
        challenge_duration=60,
        created_ms=1,
    )
    by_hand = ChannelState(
        terms=terms,
        latest_turn=4,
        signatures={4: TurnSignatures("0x" + f"{4:064x}", frozenset({BOB}))},
        updated_ms=5,
    )
    projection = ChannelProjection()
    after = projection.fold(by_hand, signed(4), CHANNEL.lower(), 9)
    assert after is not None and after.signatures[4].signers == {ALICE.lower(), BOB}
    assert after.created_ms == 1 and after.event_count == 2
    with pytest.raises(InvalidTransition) as raised:
        projection.fold(after, signed(4), CHANNEL.lower(), 10)
    assert raised.value.rule == "channel.duplicate-signer"


def test_a_long_unsupported_channel_keeps_every_turn_and_old_states() -> None:
    projection = ChannelProjection()
    events = [(created(), 0)] + [(signed(turn), turn) for turn in range(1, 400)]
    states = []
    state = None
    for event, offset in events:
        state = projection.fold(state, event, CHANNEL.lower(), offset)
        states.append(state)
    assert state is not None and len(state.signatures) == 399
    assert state.latest_signed_turn == 399 and state.event_count == 400
    middle = states[200]
    assert middle is not None and len(middle.signatures) == 200 and 201 not in middle.signatures
    assert middle.signatures == {
        turn: TurnSignatures("0x" + f"{turn:064x}", frozenset({ALICE.lower()}))
        for turn in range(1, 201)
    }


class CountingChecks(EntityProjection[int]):
    """Counts every call of the cross-entity hooks; folds ObjectiveCreated into a count."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0
        self.index_calls = 0
        self.commits = 0

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        return ("all",) if type(event) is ObjectiveCreated else ()

    def fold(self, state: int | None, event: Event, entity_id: str, offset: int) -> int | None:
        return (state or 0) + 1

    def check(self, stage: EntityStage[int], event: Event, changes: list[Any]) -> None:
        self.checks += 1

    def index_updates(self, event: Event, changes: list[Any]) -> list[tuple[str, Any]]:
        self.index_calls += 1
        return [("seen", len(changes))]

    def _on_commit(self, entity_id: str, before: int | None, after: int) -> None:
        self.commits += 1


class OnlyObjectiveChecks(CountingChecks):
    """The same, declaring that its hooks act on ObjectiveCreated only."""

    cross_entity_event_types = frozenset({ObjectiveCreated})


def test_cross_entity_hooks_run_for_every_event_unless_types_are_declared() -> None:
    events = workload_events()
    creates = sum(type(event) is ObjectiveCreated for event in events)
    every, declared = CountingChecks(), OnlyObjectiveChecks()
    fold_all(every, events)
    fold_all(declared, events)
    assert (every.checks, every.index_calls) == (len(events), len(events))
    assert (declared.checks, declared.index_calls) == (creates, creates)
    assert every.get("all") == declared.get("all") == creates
    assert every.commits == declared.commits == creates  # overridden _on_commit still runs
    assert every._index == {"seen": 0}  # the last event is no create...
    assert declared._index == {"seen": 1}  # ...and only creates reached the declared hooks


def test_declared_types_keep_the_real_cross_entity_rules() -> None:
    """The built-in projections declare their types; their rules still refuse."""
    events = workload_events()
    objectives = ObjectiveProjection()
    messages = MessagesProjection()
    fold_all(objectives, events)
    fold_all(messages, events)
    assert objectives.cross_entity_event_types and messages.cross_entity_event_types
    assert all(messages.knows_objective(oid) for oid in objectives.ids())
