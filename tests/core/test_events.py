"""Event construction: every field encoding of DESIGN section 2 is enforced."""

from __future__ import annotations

from typing import Any, cast

import attrs
import pytest

from chanlog import InvalidEvent, codec
from chanlog.events import (
    BUILTIN_EVENT_TYPES,
    ChannelCreated,
    DepositDetected,
    MessageDropped,
    MessageSent,
    ObjectiveCreated,
    SnapshotCreated,
    StateSigned,
)
from chanlog.fields import ENTITY_ID_RULE, entity_id_check
from chanlog.testing.plugins import EntityNoted

B32 = "0x" + "ab" * 32
ADDR_A = "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0"
ADDR_B = "0x8626f6940E2eb28930eFb4CeF49B2d1F2C9C1199"
SIG = "0x" + "12" * 65


def signed(**overrides: Any) -> StateSigned:
    values: dict[str, Any] = {
        "channel_id": B32,
        "turn_num": 1,
        "state_hash": B32,
        "signer": ADDR_A,
        "signature": SIG,
        "timestamp_ms": 5,
    }
    values.update(overrides)
    return StateSigned(**values)


def test_catalog_has_21_distinct_kebab_case_types() -> None:
    names = [cls.event_type for cls in BUILTIN_EVENT_TYPES]
    assert len(names) == len(set(names)) == 21
    for cls in BUILTIN_EVENT_TYPES:
        assert cls.event_type == cls.event_type.lower()
        assert " " not in cls.event_type and "_" not in cls.event_type
        assert attrs.has(cls)
        params = attrs.fields(cls)
        assert all(f.kw_only for f in params)
        assert {"event_version", "timestamp_ms"} <= {f.name for f in params}


def test_events_are_frozen_and_slotted() -> None:
    event = signed()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.turn_num = 2  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("channel_id", "0x" + "ab" * 31, "bytes32"),
        ("channel_id", "ab" * 32, "bytes32"),
        ("channel_id", "0x" + "zz" * 32, "bytes32"),
        ("channel_id", 5, "bytes32"),
        ("signer", "0x1234", "address"),
        ("signature", "0x" + "12" * 64, "signature"),
        ("turn_num", -1, "[0, 2**64)"),
        ("turn_num", 2**64, "[0, 2**64)"),
        ("turn_num", True, "[0, 2**64)"),
        ("turn_num", 1.0, "[0, 2**64)"),
        ("is_final", 1, "a bool"),
        ("timestamp_ms", -5, "[0, 2**64)"),
        ("event_version", 0, "[1, 2**64)"),
    ],
)
def test_bad_field_raises_invalid_event_naming_field(field: str, value: Any, rule: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        signed(**{field: value})
    assert info.value.field == field
    assert info.value.event_type == "state-signed"
    assert rule in str(info.value.rule)
    assert f"state-signed.{field}" in str(info.value)


def test_amounts_are_uint256() -> None:
    base: dict[str, Any] = {"channel_id": B32, "block_num": 1, "tx_index": 0, "asset": ADDR_A}
    ok = DepositDetected(**base, amount_deposited=2**256 - 1, now_held=0)
    assert ok.amount_deposited == 2**256 - 1
    for bad in (-1, 2**256, "5", 5.0, True):
        with pytest.raises(InvalidEvent) as info:
            # not all ints on purpose: the refusal is under test
            DepositDetected(**base, amount_deposited=cast(int, bad))
        assert info.value.field == "amount_deposited"


def test_participants_rules() -> None:
    ok = ChannelCreated(channel_id=B32, participants=[ADDR_A, ADDR_B], challenge_duration=60)
    assert ok.participants == (ADDR_A, ADDR_B)  # a list becomes a tuple
    with pytest.raises(InvalidEvent, match=r"2\.\.255"):
        ChannelCreated(channel_id=B32, participants=[ADDR_A], challenge_duration=60)
    with pytest.raises(InvalidEvent, match=r"2\.\.255"):
        ChannelCreated(channel_id=B32, participants=[ADDR_A, ADDR_A.lower()], challenge_duration=60)
    with pytest.raises(InvalidEvent) as info:
        ChannelCreated(channel_id=B32, participants=[ADDR_A, "0x12"], challenge_duration=60)
    assert info.value.field == "participants[1]"
    with pytest.raises(InvalidEvent):
        ChannelCreated(channel_id=B32, participants=ADDR_A + ADDR_B, challenge_duration=60)
    many = tuple("0x" + f"{i:040x}" for i in range(256))
    with pytest.raises(InvalidEvent):
        ChannelCreated(channel_id=B32, participants=many, challenge_duration=60)
    assert (
        len(
            ChannelCreated(
                channel_id=B32, participants=many[:255], challenge_duration=1
            ).participants
        )
        == 255
    )
    with pytest.raises(InvalidEvent, match="challenge_duration"):
        ChannelCreated(channel_id=B32, participants=[ADDR_A, ADDR_B], challenge_duration=0)


def test_enums() -> None:
    with pytest.raises(InvalidEvent, match="DirectFund"):
        ObjectiveCreated(objective_id=B32, objective_type="directfund")
    with pytest.raises(InvalidEvent, match="replay_attack"):
        MessageDropped(peer_id="p", reason="r", error_code="other")
    with pytest.raises(InvalidEvent, match="peer_id"):
        MessageSent(message_id=B32, peer_id="", objective_id=B32)


def test_hex_case_is_kept_and_streams_are_case_insensitive() -> None:
    upper = "0x" + "AB" * 32
    event = signed(channel_id=upper)
    assert event.channel_id == upper
    assert event.streams == (upper.lower(),)
    assert upper.encode() in event.canonical_json()
    assert event.event_id != signed(channel_id=upper.lower()).event_id


def test_streams_per_group() -> None:
    message = MessageSent(message_id=B32, peer_id="peer", objective_id="0x" + "cd" * 32)
    assert message.streams == (B32, "0x" + "cd" * 32)
    assert MessageDropped(peer_id="p", reason="r", error_code="decode_failed").streams == ()
    snapshot = SnapshotCreated(
        snapshot_offset=3, snapshot_hash=B32, objective_count=0, channel_count=0
    )
    assert snapshot.streams == ()


def test_optional_fields_are_omitted_not_null() -> None:
    payload = codec.to_payload(signed())
    assert "is_final" not in payload and "app_data_hash" not in payload
    assert b"null" not in signed().canonical_json()
    assert codec.to_payload(signed(is_final=False))["is_final"] is False


def test_default_timestamp_is_now() -> None:
    before = codec.to_payload(signed(timestamp_ms=0))["timestamp_ms"]
    event = StateSigned(channel_id=B32, turn_num=1, state_hash=B32, signer=ADDR_A, signature=SIG)
    assert event.timestamp_ms > before
    assert event.event_version == 1


def test_event_id_is_cached_and_equal_events_share_it() -> None:
    event = signed()
    assert event.event_id is event.event_id
    assert signed().event_id == event.event_id
    assert signed(turn_num=2).event_id != event.event_id
    assert event == signed() and hash(event) == hash(signed())


def test_only_a_type_with_a_free_form_entity_id_pays_for_its_check() -> None:
    """The built-in types' stream fields are hex (no NUL can pass them), so the store adds
    no entity-id check to their encoding; a plugin type naming its entity with free-form
    text gets one (ADR 0070)."""
    assert [cls for cls in BUILTIN_EVENT_TYPES if entity_id_check(cls) is not None] == []
    check = entity_id_check(EntityNoted)
    assert check is not None
    check(EntityNoted(entity="any text at all", timestamp_ms=1))
    with pytest.raises(InvalidEvent) as refused:
        check(EntityNoted(entity="\x00", timestamp_ms=1))
    assert (refused.value.event_type, refused.value.field, refused.value.rule) == (
        "conformance-entity-noted",
        "entity",
        ENTITY_ID_RULE,
    )
