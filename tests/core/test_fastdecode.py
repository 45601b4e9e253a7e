"""The fast read path agrees with the strict decoder and falls back to it on surprises."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chanlog import DecodeError, Event, EventStore, codec, fields
from chanlog.backends.memory import MemoryBackend
from chanlog.events import BUILTIN_EVENT_TYPES
from chanlog.fastdecode import Mismatch, trusted_decoder
from chanlog_strategies import any_event


@settings(max_examples=300)
@given(event=any_event)
def test_fast_decoder_equals_strict_decoder(event: Event) -> None:
    decoder = trusted_decoder(type(event))
    assert decoder is not None
    payload = codec.to_payload(event)
    fast = decoder(payload)
    assert fast == event
    assert type(fast) is type(event)
    assert fast.canonical_json() == event.canonical_json()


def test_every_builtin_type_has_a_fast_decoder() -> None:
    assert all(trusted_decoder(cls) is not None for cls in BUILTIN_EVENT_TYPES)


@settings(max_examples=300)
@given(event=any_event, data=st.data())
def test_any_shape_change_is_a_mismatch(event: Event, data: st.DataObject) -> None:
    decoder = trusted_decoder(type(event))
    assert decoder is not None
    payload: dict[str, Any] = codec.to_payload(event)
    change = data.draw(st.sampled_from(["drop", "extra", "retype", "null"]))
    key = data.draw(st.sampled_from(sorted(payload)))
    if change == "drop":
        del payload[key]
        if attrs.fields_dict(type(event))[key].default is None:
            # An optional field may be absent: that is a valid payload, not a surprise.
            absent: dict[str, Any] = {key: None}
            assert decoder(payload) == attrs.evolve(event, **absent)
            return
    elif change == "extra":
        payload["unexpected"] = 1
    elif change == "retype":
        payload[key] = [payload[key]] if not isinstance(payload[key], list) else "x"
    else:
        payload[key] = None
    with pytest.raises(Mismatch):
        decoder(payload)


# A WithdrawCompleted payload missing only its amount, which each test supplies.
_WITHDRAWAL_WITHOUT_AMOUNT = {
    "channel_id": "0x" + "ab" * 32,
    "block_num": 1,
    "tx_index": 0,
    "recipient": "0x" + "cd" * 20,
    "asset": "0x" + "00" * 20,
    "timestamp_ms": 0,
    "event_version": 1,
}


def test_amounts_must_be_canonical_decimal_strings() -> None:
    from chanlog.events import WithdrawCompleted

    decoder = trusted_decoder(WithdrawCompleted)
    assert decoder is not None
    base = dict(_WITHDRAWAL_WITHOUT_AMOUNT)
    assert decoder(base | {"amount": "0"}).amount == 0  # type: ignore[attr-defined]
    assert decoder(base | {"amount": str(2**255)}).amount == 2**255  # type: ignore[attr-defined]
    for odd in ("007", "-1", " 1", "1_000", 5, "٣"):
        with pytest.raises(Mismatch):
            decoder(base | {"amount": odd})


def test_plugin_types_beyond_primitives_decode_strictly() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Weird(Event):
        event_type: ClassVar[str] = "weird"
        ratio: float = attrs.field(default=0.5)

    assert trusted_decoder(Weird) is None


def test_store_reads_fall_back_to_the_strict_decoder() -> None:
    backend = MemoryBackend()
    store = EventStore(backend, projections=[])
    from chanlog_samples import make_signed

    store.append_batch([make_signed(0), make_signed(1)])
    original = backend._payloads[1]
    # A payload that is valid JSON but not what the log writes: the strict decoder explains.
    backend._payloads[1] = original.replace(b'"turn_num":1', b'"turn_num":"1"')
    records = store.read_from(0)
    assert next(records).offset == 0
    with pytest.raises(DecodeError) as info:
        next(records)
    assert info.value.offset == 1
    assert info.value.path == "turn_num"
    # Garbage bytes are a DecodeError naming the offset too.
    backend._payloads[1] = b"\xff not json"
    with pytest.raises(DecodeError, match="offset 1"):
        list(store.read_from(1))


def test_stream_reads_fall_back_to_the_strict_decoder() -> None:
    """The lean stream path reconstruction folds over explains a surprise the same way."""
    backend = MemoryBackend()
    store = EventStore(backend, projections=[])
    from chanlog_samples import make_signed

    first, second = make_signed(0), make_signed(1)
    store.append_batch([first, second])
    channel = first.channel_id
    # Valid JSON that is not what the log writes (a turn as a string): the fast decoder
    # steps aside and the strict one names the field and the offset.
    original = backend._payloads[1]
    backend._payloads[1] = original.replace(b'"turn_num":1', b'"turn_num":"1"')
    events = store.stream_events(channel)
    assert next(events) == (0, first)
    with pytest.raises(DecodeError) as info:
        next(events)
    assert (info.value.offset, info.value.path) == (1, "turn_num")
    for garbage in (b"\xff not json", b"[1]"):
        backend._payloads[1] = garbage
        with pytest.raises(DecodeError, match="offset 1"):
            list(store.stream_events(channel, 1))
    backend._payloads[1] = original
    assert [offset for offset, _ in store.stream_events(channel)] == [0, 1]


class _WithoutLeanReads:
    """A backend that offers only the required read_stream (no read_stream_payloads)."""

    def __init__(self, inner: MemoryBackend) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "read_stream_payloads":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_stream_reads_work_on_backends_without_the_lean_read() -> None:
    from chanlog_samples import make_signed

    events = [make_signed(0), make_signed(1)]
    store = EventStore(_WithoutLeanReads(MemoryBackend()), projections=[])
    store.append_batch(events)
    assert list(store.stream_events(events[0].channel_id)) == [(0, events[0]), (1, events[1])]


def test_records_read_back_carry_their_id_without_reencoding() -> None:
    from chanlog_samples import make_signed

    store = EventStore(projections=[])
    event = make_signed(3)
    store.append(event)
    record = next(iter(store))
    assert record.event is not event
    assert record.event.event_id == event.event_id == record.event_id
    assert fields.MAX_AMOUNT == 2**256


def test_overlong_amounts_are_a_mismatch_not_a_value_error() -> None:
    from chanlog.events import WithdrawCompleted

    decoder = trusted_decoder(WithdrawCompleted)
    assert decoder is not None
    base = dict(_WITHDRAWAL_WITHOUT_AMOUNT)
    largest = str(2**256 - 1)
    assert len(largest) == 78
    assert decoder(base | {"amount": largest}).amount == 2**256 - 1  # type: ignore[attr-defined]
    for odd in ("1" * 79, "1" * 5000):  # int() of 5000 digits would raise ValueError
        with pytest.raises(Mismatch):
            decoder(base | {"amount": odd})


def test_explicit_null_for_an_optional_field_is_a_mismatch() -> None:
    from chanlog_samples import make_signed

    event = make_signed(1)
    decoder = trusted_decoder(type(event))
    assert decoder is not None
    payload = codec.to_payload(event)
    assert "is_final" not in payload
    assert decoder(payload) == event
    with pytest.raises(Mismatch):
        decoder(payload | {"is_final": None})


def test_decoded_events_are_frozen_and_complete() -> None:
    from chanlog_samples import make_signed

    event = make_signed(2)
    decoder = trusted_decoder(type(event))
    assert decoder is not None
    decoded = decoder(codec.to_payload(event))
    assert attrs.asdict(decoded) == attrs.asdict(event)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        decoded.timestamp_ms = 1  # type: ignore[misc]


def test_plugin_types_with_unresolvable_annotations_decode_strictly() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Local(Event):
        event_type: ClassVar[str] = "local"
        thing: LocalThing | None = attrs.field(default=None)  # type: ignore[name-defined]  # noqa: F821

    assert trusted_decoder(Local) is None
