"""The messages projection: outstanding messages per peer and its three rules."""

from __future__ import annotations

import pytest

from chanlog import (
    Event,
    EventStore,
    InvalidTransition,
    MessageAcked,
    MessageDropped,
    MessageReceived,
    MessageSent,
    ObjectiveCreated,
)
from chanlog.projections import MessagesProjection

OBJECTIVE = "0x" + "0a" * 32


M1, M2, M3 = ("0x" + c * 64 for c in "123")


def sent(mid: str, peer: str = "bob", ts: int = 2) -> MessageSent:
    return MessageSent(message_id=mid, peer_id=peer, objective_id=OBJECTIVE, timestamp_ms=ts)


@pytest.fixture
def store() -> EventStore:
    instance = EventStore()
    instance.append(
        ObjectiveCreated(objective_id=OBJECTIVE, objective_type="DirectFund", timestamp_ms=1)
    )
    return instance


def test_outstanding_per_peer_and_acks(store: EventStore) -> None:
    store.append_batch([sent(M1), sent(M2, "carol", 3), sent(M3, ts=4)])
    projection = store.projection("messages")
    assert isinstance(projection, MessagesProjection)
    assert projection.outstanding_counts() == {"bob": 2, "carol": 1}
    assert [m.message_id for m in projection.outstanding("bob")] == [M1, M3]
    store.append(MessageAcked(message_id=M1, peer_id="bob", roundtrip_ms=12, timestamp_ms=5))
    assert [m.message_id for m in projection.outstanding("bob")] == [M3]
    assert store.state("messages", M1).roundtrip_ms == 12
    assert store.state("objective", OBJECTIVE).messages_sent == 3
    assert projection.outstanding("nobody") == []


def test_received_may_come_first_and_counts_once_the_objective_exists() -> None:
    store = EventStore()
    other = "0x" + "99" * 32
    store.append(MessageReceived(message_id=M1, peer_id="bob", objective_id=other, timestamp_ms=1))
    assert store.state("messages", M1).received
    with pytest.raises(Exception, match="no objective"):
        store.state("objective", other)
    store.append(ObjectiveCreated(objective_id=other, objective_type="DirectFund", timestamp_ms=2))
    store.append(MessageReceived(message_id=M2, peer_id="bob", objective_id=other, timestamp_ms=3))
    assert store.state("objective", other).messages_received == 1


@pytest.mark.parametrize(
    ("prefix", "event", "rule", "entity"),
    [
        (
            [],
            MessageAcked(message_id=M1, peer_id="bob", timestamp_ms=9),
            "messages.ack-unknown",
            M1,
        ),
        (
            [MessageReceived(message_id=M1, peer_id="bob", objective_id=OBJECTIVE, timestamp_ms=2)],
            MessageAcked(message_id=M1, peer_id="bob", timestamp_ms=9),
            "messages.ack-unknown",
            M1,
        ),
        (
            [sent(M1), MessageAcked(message_id=M1, peer_id="bob", timestamp_ms=3)],
            MessageAcked(message_id=M1, peer_id="bob", roundtrip_ms=1, timestamp_ms=9),
            "messages.ack-once",
            M1,
        ),
        (
            [],
            MessageSent(
                message_id=M2, peer_id="bob", objective_id="0x" + "77" * 32, timestamp_ms=9
            ),
            "messages.sent-requires-objective",
            M2,
        ),
    ],
)
def test_message_rules(
    store: EventStore, prefix: list[Event], event: Event, rule: str, entity: str
) -> None:
    store.append_batch(prefix)
    length = len(store)
    dump = store.projection("messages").dump()
    with pytest.raises(InvalidTransition) as raised:
        store.append(event)
    assert (raised.value.rule, raised.value.kind, raised.value.entity_id) == (
        rule,
        "messages",
        entity,
    )
    assert len(store) == length
    assert store.projection("messages").dump() == dump


def test_objective_created_in_the_same_batch_allows_sending() -> None:
    store = EventStore()
    other = "0x" + "98" * 32
    store.append_batch(
        [
            ObjectiveCreated(objective_id=other, objective_type="DirectDefund", timestamp_ms=1),
            MessageSent(message_id=M1, peer_id="bob", objective_id=other, timestamp_ms=2),
        ]
    )
    assert store.projection("messages").knows_objective(other.upper().replace("0X", "0x"))  # type: ignore[attr-defined]


def test_drops_are_recorded_and_a_drop_without_id_concerns_no_message(store: EventStore) -> None:
    store.append_batch(
        [
            MessageDropped(
                message_id=M1,
                peer_id="eve",
                reason="bad sig",
                error_code="signature_invalid",
                payload_size_bytes=7,
                timestamp_ms=2,
            ),
            MessageDropped(
                peer_id="eve", reason="garbage", error_code="decode_failed", timestamp_ms=3
            ),
        ]
    )
    state = store.state("messages", M1)
    assert (state.dropped, state.drop_code, state.payload_size_bytes) == (
        True,
        "signature_invalid",
        7,
    )
    assert not state.outstanding
    assert len(store.projection("messages")) == 1


def test_dump_and_load_round_trip_keeps_outstanding(store: EventStore) -> None:
    store.append_batch([sent(M1), sent(M2, ts=3)])
    projection = store.projection("messages")
    fresh = MessagesProjection()
    fresh.load(projection.dump())
    assert fresh.states() == projection.states()  # type: ignore[attr-defined]
    assert fresh.outstanding_counts() == {"bob": 2}
    assert fresh.knows_objective(OBJECTIVE)
