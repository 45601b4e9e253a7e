"""Hypothesis: every event type round-trips; garbage only ever raises DecodeError."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import DecodeError, codec
from chanlog.events import BUILTIN_EVENT_TYPES, Event
from chanlog.plugins import default_host
from chanlog_strategies import any_event, event_of

TYPES = default_host().event_types
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.mark.parametrize("cls", BUILTIN_EVENT_TYPES, ids=lambda c: c.event_type)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_every_type(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(event_of(cls))
    canonical, event_id = codec.encode_event(event)
    decoded = codec.decode_event(cls.event_type, canonical, TYPES)
    assert decoded == event
    assert decoded.canonical_json() == canonical
    assert decoded.event_id == event_id
    parsed = orjson.loads(canonical)
    assert list(parsed) == sorted(parsed)  # keys sorted
    assert None not in parsed.values()  # optional fields omitted, never null
    for name in {"amount_deposited", "now_held", "new_amount", "amount"} & set(parsed):
        assert parsed[name] == str(getattr(event, name))  # amounts as decimal strings


@settings(max_examples=200)
@given(event=any_event)
def test_big_amounts_and_mixed_case_survive(event: Event) -> None:
    again = codec.decode_event(event.event_type, event.canonical_json(), TYPES)
    for name in ("amount_deposited", "now_held", "new_amount", "amount", "signer", "channel_id"):
        if hasattr(event, name):
            assert getattr(again, name) == getattr(event, name)


def test_amount_beyond_uint64_is_exact() -> None:
    from chanlog.events import WithdrawCompleted

    event = WithdrawCompleted(
        channel_id="0x" + "Ab" * 32,
        block_num=1,
        tx_index=2,
        recipient="0x" + "Cd" * 20,
        asset="0x" + "00" * 20,
        amount=2**255 + 12345,
        timestamp_ms=0,
    )
    assert b'"amount":"' + str(2**255 + 12345).encode() + b'"' in event.canonical_json()
    assert codec.decode_event("withdraw-completed", event.canonical_json(), TYPES) == event


@given(data=st.binary(max_size=200), name=st.sampled_from(sorted(TYPES)))
def test_random_bytes_only_raise_decode_error(data: bytes, name: str) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode_event(name, data, TYPES)


@given(value=json_values, name=st.sampled_from(sorted(TYPES)) | st.text(max_size=10))
def test_random_json_only_raises_decode_error(value: Any, name: str) -> None:
    with pytest.raises(DecodeError):
        codec.decode_event(name, orjson.dumps(value) if value is not None else b"null", TYPES)


@settings(max_examples=300)
@given(event=any_event, replacement=json_values, data=st.data())
def test_valid_json_with_a_wrong_field_raises_decode_error(
    event: Event, replacement: Any, data: st.DataObject
) -> None:
    payload = codec.to_payload(event)
    key = data.draw(st.sampled_from([*sorted(payload), "unexpected_field"]))
    payload[key] = replacement
    try:
        decoded = codec.decode_event(event.event_type, orjson.dumps(payload), TYPES)
    except DecodeError as exc:
        failed_on = exc.event_type
    else:
        failed_on = None
    if failed_on is not None:
        assert failed_on == event.event_type
        return
    # The replacement happened to be valid for that field: it must then round-trip.
    assert codec.decode_event(event.event_type, decoded.canonical_json(), TYPES) == decoded


def test_decode_errors_name_type_and_path() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_event("state-signed", b'{"channel_id": 5}', TYPES)
    assert info.value.event_type == "state-signed"
    assert info.value.path == "channel_id"
    with pytest.raises(DecodeError, match="unknown event type"):
        codec.decode_event("no-such-event", b"{}", TYPES)
    with pytest.raises(DecodeError, match="malformed JSON"):
        codec.decode_event("state-signed", b"{", TYPES)
    with pytest.raises(DecodeError, match="JSON object"):
        codec.decode_event("state-signed", b"[1]", TYPES)
    event = _sample_event()
    with pytest.raises(DecodeError, match="unknown field"):
        codec.decode_event(event.event_type, codec.to_payload(event) | {"zzz": 1}, TYPES)


def test_amount_decoding_is_strict() -> None:
    base = {
        "channel_id": "0x" + "ab" * 32,
        "block_num": 1,
        "tx_index": 0,
        "asset": "0x" + "00" * 20,
        "timestamp_ms": 0,
    }
    for bad in ("01", "-1", "1.5", "0x10", str(2**256), 1.5, True, None, " 1"):
        with pytest.raises(DecodeError) as info:
            codec.decode_event("deposit-detected", base | {"amount_deposited": bad}, TYPES)
        assert info.value.path == "amount_deposited"
    decoded = codec.decode_event("deposit-detected", base | {"amount_deposited": 7}, TYPES)
    assert decoded.canonical_json().count(b'"7"') == 1


def _sample_event() -> Event:
    from chanlog.events import ObjectiveApproved

    return ObjectiveApproved(objective_id="0x" + "aB" * 32, timestamp_ms=7)


def test_envelopes() -> None:
    event = _sample_event()
    envelope = {"type": event.event_type, "payload": codec.to_payload(event)}
    assert codec.decode_envelope(envelope, TYPES) == event
    assert codec.decode_envelope(envelope | {"event_id": event.event_id}, TYPES) == event
    with pytest.raises(DecodeError, match="does not match"):
        codec.decode_envelope(envelope | {"event_id": "0x" + "00" * 32}, TYPES)
    with pytest.raises(DecodeError, match="type"):
        codec.decode_envelope({"payload": {}}, TYPES)
    with pytest.raises(DecodeError, match="payload"):
        codec.decode_envelope({"type": event.event_type}, TYPES)
    with pytest.raises(DecodeError, match="JSON object"):
        codec.decode_envelope([1], TYPES)
