"""The channel projection: what is legal but unusual, and the state it keeps."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from chanlog import (
    AllocationUpdated,
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    ChannelCreated,
    DepositDetected,
    EventStore,
    InvalidTransition,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
    WithdrawCompleted,
)
from chanlog.errors import DecodeError
from chanlog.projections import ChannelProjection, ChannelState

CHANNEL = "0x" + "c1" * 32
ALICE = "0x" + "A1" * 20
BOB = "0x" + "b0" * 20
ASSET = "0x" + "00" * 20
SIG = "0x" + "ab" * 65

C = TypeVar("C", bound=ChainEvent)


def h(turn: int) -> str:
    return "0x" + f"{turn:064x}"


def signed(turn: int, signer: str = ALICE, ts: int = 10) -> StateSigned:
    return StateSigned(
        channel_id=CHANNEL,
        turn_num=turn,
        state_hash=h(turn),
        signer=signer,
        signature=SIG,
        timestamp_ms=ts,
    )


def received(turn: int, signer: str = BOB, ts: int = 10) -> StateReceived:
    return StateReceived(
        channel_id=CHANNEL,
        turn_num=turn,
        state_hash=h(turn),
        signer=signer,
        signature=SIG,
        timestamp_ms=ts,
    )


def supported(turn: int, prev: int | None) -> StateSupportedUpdated:
    return StateSupportedUpdated(
        channel_id=CHANNEL,
        supported_turn=turn,
        state_hash=h(turn),
        prev_supported_turn=prev,
        timestamp_ms=20,
    )


@pytest.fixture
def store() -> EventStore:
    instance = EventStore()
    instance.append(
        ChannelCreated(
            channel_id=CHANNEL, participants=[ALICE, BOB], challenge_duration=60, timestamp_ms=1
        )
    )
    return instance


def test_fixed_part_and_turn_bookkeeping(store: EventStore) -> None:
    store.append_batch(
        [signed(0), received(0), supported(0, None), signed(1), received(1), supported(1, 0)]
    )
    state = store.state("channel", CHANNEL)
    assert isinstance(state, ChannelState)
    assert state.status == "open"
    assert (state.latest_turn, state.latest_signed_turn, state.supported_turn) == (1, 1, 1)
    assert state.supported_hash == h(1)
    assert set(state.signatures) == {1}  # pruned below the supported turn
    assert state.signatures[1].signers == {ALICE.lower(), BOB}
    assert state.challenge_duration == 60 and state.event_count == 7


def test_signed_turn_below_latest_but_not_below_supported_is_kept(store: EventStore) -> None:
    store.append_batch([signed(0), received(0), supported(0, None), signed(5), received(3)])
    state = store.state("channel", CHANNEL)
    assert state.latest_turn == 5  # does not go down
    assert state.signatures[3].signers == {BOB}
    assert state.status == "created"  # post-fund not supported yet


def test_supported_state_must_agree_with_the_signed_hash(store: EventStore) -> None:
    store.append(signed(0))
    bad = StateSupportedUpdated(
        channel_id=CHANNEL, supported_turn=0, state_hash=h(9), timestamp_ms=3
    )
    with pytest.raises(InvalidTransition) as raised:
        store.append(bad)
    assert raised.value.rule == "channel.conflicting-state-hash"


def chain(cls: type[C], block: int, tx: int = 0, **fields: Any) -> C:
    return cls(channel_id=CHANNEL, block_num=block, tx_index=tx, timestamp_ms=30 + block, **fields)


def test_holdings_challenges_conclusion_and_withdrawals(store: EventStore) -> None:
    store.append_batch(
        [
            signed(0),
            received(0),
            supported(0, None),
            chain(DepositDetected, 1, asset=ASSET, amount_deposited=5, now_held=5),
            chain(DepositDetected, 1, 1, asset=ASSET, amount_deposited=7),  # now_held optional
            signed(1),
            received(1),
            supported(1, 0),
            signed(2),
            received(2),
            supported(2, 1),
        ]
    )
    state = store.state("channel", CHANNEL)
    assert state.holdings == {ASSET: 12} and state.deposited == {ASSET: 12}
    stale = chain(ChallengeRegistered, 2, turn_num_record=1, finalization_time=1000, challenger=BOB)
    store.append(stale)
    state = store.state("channel", CHANNEL)
    assert state.status == "challenged" and state.challenge is not None and state.challenge.stale
    assert not state.is_finalized_at(999) and state.is_finalized_at(1000)
    store.append(chain(ChallengeCleared, 3, new_turn_num_record=2))
    state = store.state("channel", CHANNEL)
    assert state.challenge is None and state.turn_num_record == 2 and state.status == "open"
    fresh = chain(ChallengeRegistered, 4, turn_num_record=3, finalization_time=5, challenger=BOB)
    store.append(fresh)
    assert store.state("channel", CHANNEL).challenge.stale is False
    store.append_batch(
        [
            chain(ChannelConcluded, 5, finalized_at_turn=2),
            chain(AllocationUpdated, 6, asset=ASSET, new_amount=0),
            chain(WithdrawCompleted, 7, recipient=ALICE, asset=ASSET, amount=5),
            chain(WithdrawCompleted, 8, recipient=BOB, asset=ASSET, amount=7),
        ]
    )
    state = store.state("channel", CHANNEL)
    assert state.status == "concluded" and state.is_finalized_at(0)
    assert state.holdings == {ASSET: 0}
    assert state.withdrawn == {(ALICE.lower(), ASSET): 5, (BOB, ASSET): 7}
    assert state.withdrawn_of(ASSET) == 12 and state.chain_position == (8, 0)
    with pytest.raises(InvalidTransition) as raised:
        store.append(signed(3))
    assert raised.value.rule == "channel.closed"


def test_dump_load_round_trip_and_strict_load(store: EventStore) -> None:
    store.append_batch(
        [
            signed(0),
            received(0),
            supported(0, None),
            chain(DepositDetected, 1, asset=ASSET, amount_deposited=2**255),
        ]
    )
    projection = store.projection("channel")
    assert isinstance(projection, ChannelProjection)
    data = projection.dump()
    fresh = ChannelProjection()
    fresh.load(data)
    assert fresh.states() == projection.states()
    assert fresh.get(CHANNEL.upper().replace("0X", "0x")) == projection.get(CHANNEL)
    assert fresh.get("0x" + "00" * 32) is None
    broken = {"states": {CHANNEL: {**data["states"][CHANNEL], "holdings": {ASSET: 5}}}, "index": {}}
    with pytest.raises(DecodeError, match="holdings"):
        fresh.load(broken)
    assert fresh.states() == projection.states()  # a failed load replaces nothing
    bad_dumps: list[object] = [[], {"states": {}}, {"states": {}, "index": {"k": [1]}}]
    for bad in bad_dumps:
        with pytest.raises(DecodeError):
            fresh.load(bad)
