"""Fuzz every public decoder with random and damaged input: only chanlog's own errors may
come out (DESIGN section 8), and the decoders documented to raise DecodeError raise nothing
else.

Inputs start from real encoded events (golden vectors, the demo, sample and workload
events, Hypothesis-built valid events) and are damaged (bytes flipped, cut, inserted;
JSON values replaced, deleted or added), besides being purely random.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chanlog
from chanlog import codec
from chanlog.backends.memory import MemoryBackend
from chanlog.errors import DecodeError
from chanlog.events import BUILTIN_EVENT_TYPES, Event
from chanlog.serializers import JsonSerializer
from fuzz.fuzz_helpers import (
    TYPES,
    damaged_bytes,
    damaged_json,
    event_types,
    json_values,
    only_chanlog_errors,
    payload_of,
    real_events,
    to_json,
)

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _envelope(event: Event) -> dict[str, Any]:
    return {"type": event.event_type, "payload": payload_of(event), "event_id": event.event_id}


# -- chanlog.codec -----------------------------------------------------------------------


@given(data=st.binary(max_size=300) | st.builds(to_json, json_values))
def test_decode_payload_random_bytes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode_payload(data)


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_decode_event_damaged_canonical_json(data: st.DataObject, event: Event) -> None:
    damaged = data.draw(damaged_bytes(event.canonical_json()))
    name = data.draw(st.just(event.event_type) | event_types)
    with contextlib.suppress(DecodeError):
        decoded = codec.decode_event(name, damaged, TYPES)
        # Whatever decodes is a valid event that encodes again.
        assert decoded.canonical_json()
        assert decoded.event_id.startswith("0x")


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_decode_event_damaged_payload_mapping(data: st.DataObject, event: Event) -> None:
    payload = data.draw(damaged_json(payload_of(event)))
    with contextlib.suppress(DecodeError):
        decoded = codec.decode_event(event.event_type, payload, TYPES)
        assert decoded.event_id.startswith("0x")
    with contextlib.suppress(DecodeError):
        codec.decode_event(event.event_type, to_json(payload), TYPES)


@settings(suppress_health_check=SLOW)
@given(
    cls=st.sampled_from(BUILTIN_EVENT_TYPES),
    payload=json_values | st.dictionaries(st.text(max_size=20), json_values, max_size=8),
)
def test_from_payload_random_values(cls: type[Event], payload: Any) -> None:
    with contextlib.suppress(DecodeError):
        codec.from_payload(cls, payload)


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_from_payload_damaged_real_payloads(data: st.DataObject, event: Event) -> None:
    payload = data.draw(damaged_json(payload_of(event)))
    with contextlib.suppress(DecodeError):
        decoded = codec.from_payload(type(event), payload, offset=3)
        assert decoded.event_id.startswith("0x")  # encodable: no lone surrogate got through


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_decode_envelope_damaged(data: st.DataObject, event: Event) -> None:
    envelope = data.draw(damaged_json(_envelope(event)) | json_values)
    with contextlib.suppress(DecodeError):
        codec.decode_envelope(envelope, TYPES, offset=1)


@given(
    envelope=st.fixed_dictionaries(
        {"type": event_types | json_values, "payload": json_values},
        optional={"event_id": json_values, "offset": json_values},
    )
)
def test_decode_envelope_random(envelope: dict[str, Any]) -> None:
    with contextlib.suppress(DecodeError):
        codec.decode_envelope(envelope, TYPES)


# -- serializers -------------------------------------------------------------------------


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_json_serializer_loads_damaged(data: st.DataObject, event: Event) -> None:
    serializer = JsonSerializer()
    stored = serializer.dumps(payload_of(event))
    damaged = data.draw(damaged_bytes(stored) | st.binary(max_size=200))
    with contextlib.suppress(DecodeError):
        assert isinstance(serializer.loads(damaged), dict)


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_msgpack_serializer_loads_damaged(data: st.DataObject, event: Event) -> None:
    plugin = pytest.importorskip("chanlog_msgpack.serializer")
    serializer = plugin.MsgpackSerializer()
    stored = serializer.dumps(payload_of(event))
    damaged = data.draw(damaged_bytes(stored) | st.binary(max_size=200))
    with contextlib.suppress(DecodeError):
        loaded = serializer.loads(damaged)
        assert isinstance(loaded, dict)
        # What loads returns is what the store decodes and verify() re-encodes.
        with contextlib.suppress(DecodeError):
            codec.from_payload(type(event), loaded)


# -- the store's read path over damaged stored payloads ---------------------------------


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_store_reads_damaged_stored_payloads(serializer: str, data: st.DataObject) -> None:
    """A payload changed at rest (here: in the memory backend's columns) is refused by
    reads and verify() with a chanlog error."""
    if serializer == "msgpack":
        pytest.importorskip("chanlog_msgpack")
    from fuzz.fuzz_helpers import REAL_EVENTS

    events = [event for event in REAL_EVENTS if event.event_type != "snapshot-created"]
    backend = MemoryBackend()
    with chanlog.EventStore(backend, serializer=serializer, projections=[]) as store:
        store.append_batch(events)
    position = data.draw(st.integers(0, len(events) - 1))
    backend._payloads[position] = data.draw(damaged_bytes(backend._payloads[position]))
    with chanlog.EventStore(backend, serializer=serializer, projections=[]) as store:
        with only_chanlog_errors():
            list(store.read_from(0))
        with only_chanlog_errors():
            store.verify()
        with only_chanlog_errors():
            list(store.read_stream(events[position].streams[0]))


# -- sanity: the strategies do reach the decoders' success paths -------------------------


def test_real_events_round_trip() -> None:
    from fuzz.fuzz_helpers import REAL_EVENTS

    for event in REAL_EVENTS:
        again = codec.decode_envelope(orjson.loads(orjson.dumps(_envelope(event))), TYPES)
        assert again == event
