"""Fuzz ``EventStore.append_batch`` (memory backend) with random and damaged envelopes and
with items that are no envelope at all: a refusal is a chanlog error and writes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chanlog
from chanlog.codec import decode_event
from chanlog.errors import ChanlogError
from chanlog.events import Event
from fuzz.fuzz_helpers import (
    REAL_EVENTS,
    any_text,
    damaged_json,
    event_types,
    json_values,
    objectives_of_samples,
    payload_of,
    real_events,
)

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]

# A log every projection accepts, to append after: the samples' objectives exist.
PREFIX = objectives_of_samples()


def _envelope(event: Event) -> dict[str, Any]:
    return {"type": event.event_type, "payload": payload_of(event)}


@st.composite
def retexted_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A real event's envelope with one string field given random text (lone surrogates
    included): what gets past the type checks into the text validators."""
    envelope = _envelope(draw(real_events))
    payload = envelope["payload"]
    names = sorted(key for key, value in payload.items() if type(value) is str)
    if names:
        payload[draw(st.sampled_from(names))] = draw(any_text)
    return envelope


random_envelopes = st.fixed_dictionaries(
    {"type": event_types | json_values, "payload": json_values},
    optional={"event_id": json_values, "offset": json_values, "chain_hash": json_values},
)
items = (
    retexted_envelopes()
    | real_events.map(_envelope).flatmap(damaged_json)
    | real_events.map(_envelope)
    | real_events
    | random_envelopes
    | json_values
    | st.builds(object)
    | st.binary(max_size=20)
)


def _append(store: chanlog.EventStore, batch: list[Any]) -> None:
    before = len(store)
    try:
        offsets = store.append_batch(batch)
    except ChanlogError:
        assert len(store) == before  # nothing of the refused batch was written
        return
    assert len(offsets) == len(batch)
    assert len(store) >= before
    store.verify()


@settings(max_examples=120, deadline=None, suppress_health_check=SLOW)
@given(batch=st.lists(items, min_size=1, max_size=4))
def test_append_batch_random_items(batch: list[Any]) -> None:
    with chanlog.EventStore() as store:
        store.append_batch(PREFIX)
        _append(store, batch)


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(batch=st.lists(items, min_size=1, max_size=4), projections=st.sampled_from([[], None]))
def test_append_batch_random_items_without_projections(
    batch: list[Any], projections: list[str] | None
) -> None:
    with chanlog.EventStore(projections=projections) as store:
        _append(store, batch)


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_append_one_damaged_envelope_in_a_good_batch(data: st.DataObject) -> None:
    good = [_envelope(event) for event in REAL_EVENTS[:6]]
    position = data.draw(st.integers(0, len(good) - 1))
    good[position] = data.draw(damaged_json(good[position]))
    with chanlog.EventStore(projections=[]) as store:
        _append(store, good)
    with chanlog.EventStore(projections=[]) as store:
        for item in good:
            before = len(store)
            try:
                store.append(item)
            except ChanlogError:
                assert len(store) == before


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(
    number=st.integers(0, 7),
    field=st.sampled_from(["peer_id", "payload_type"]),
    text=any_text,
    as_envelope=st.booleans(),
)
def test_append_random_text_in_an_accepted_event(
    number: int, field: str, text: str, as_envelope: bool
) -> None:
    """A sample message the projections accept, with random text in a text field: either
    refused (InvalidEvent) or appended, never an encoder's TypeError."""
    from chanlog.testing import message_sent

    envelope = _envelope(message_sent(number))
    envelope["payload"][field] = text
    with chanlog.EventStore() as store:
        store.append_batch(PREFIX)
        if as_envelope:
            _append(store, [envelope])
        else:
            try:
                event = decode_event("message-sent", envelope["payload"], store.plugins.event_types)
            except ChanlogError:
                return
            _append(store, [event])
