"""Fuzz event construction: a field given any value either is refused with InvalidEvent at
construction, or the event encodes, gets an id and decodes back to itself. An event that
constructs but cannot be encoded (a lone surrogate in a text field, issue 13 defect 7) would
fail later, inside ``append``, far from the mistake."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import codec
from chanlog.errors import InvalidEvent
from chanlog.events import Event
from fuzz.fuzz_helpers import TYPES, any_text, json_values, real_events

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _check_built(event: Event) -> None:
    canonical, event_id = codec.encode_event(event)
    assert event.event_id == event_id
    assert codec.decode_event(event.event_type, canonical, TYPES) == event


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_any_value_in_any_field(data: st.DataObject, event: Event) -> None:
    field = data.draw(st.sampled_from(attrs.fields(type(event))))
    value: Any = data.draw(json_values | any_text)
    with contextlib.suppress(InvalidEvent):
        built = attrs.evolve(event, **{field.name: value})
        _check_built(built)


@settings(suppress_health_check=SLOW)
@given(data=st.data(), event=real_events)
def test_any_text_in_text_fields(data: st.DataObject, event: Event) -> None:
    """Every field that holds a string gets random text (lone surrogates included), through
    both the generated ``__init__`` and attrs' own one (the validators called one by one)."""
    names = [f.name for f in attrs.fields(type(event)) if type(getattr(event, f.name)) is str]
    if not names:
        return
    field = data.draw(st.sampled_from(names))
    value = data.draw(any_text)
    kwargs = {f.name: getattr(event, f.name) for f in attrs.fields(type(event))}
    kwargs[field] = value
    with contextlib.suppress(InvalidEvent):
        _check_built(type(event)(**kwargs))
    attrs_init = getattr(type(event).__init__, "__chanlog_attrs_init__", None)
    if attrs_init is not None:
        bare = object.__new__(type(event))
        with contextlib.suppress(InvalidEvent):
            attrs_init(bare, **kwargs)
            _check_built(bare)
