"""A plugin's event type may declare its fields with validators of its own (or none), so an
event can hold a value canonical JSON cannot: a lone surrogate, an integer beyond 64 bits, an
object. Such an event raised orjson's ``TypeError`` from ``append``, ``append_batch`` and
``event_id``; it is an ``InvalidEvent`` naming the event type and the field, and nothing is
written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chanlog
from chanlog import EventStore, InvalidEvent, fields
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.payloads import UNENCODABLE_RULE, canonical_json
from chanlog.plugins.host import PluginHost

CHANNEL = "0x" + "cc" * 32


@attrs.define(frozen=True, slots=True, kw_only=True)
class NoteLeft(chanlog.Event):
    """Fields checked by attrs' own validators only."""

    event_type: ClassVar[str] = "note-left"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)

    channel_id: str = attrs.field(validator=fields.bytes32)
    text: str = attrs.field(validator=attrs.validators.instance_of(str))
    count: int = attrs.field(validator=attrs.validators.instance_of(int))


@attrs.define(frozen=True, slots=True, kw_only=True)
class Anything(chanlog.Event):
    """A field with no validator at all (the generated encoder does not apply)."""

    event_type: ClassVar[str] = "anything-said"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)

    channel_id: str = attrs.field(validator=fields.bytes32)
    value: Any = None


class _Notes:
    @chanlog.hookimpl
    def chanlog_register_event_types(self, register: Callable[[type], None]) -> None:
        register(NoteLeft)
        register(Anything)


def _host() -> PluginHost:
    host = PluginHost()
    host.register(_Notes(), "notes")
    return host


def _note(text: str = "ok", count: int = 1) -> NoteLeft:
    return NoteLeft(channel_id=CHANNEL, text=text, count=count, timestamp_ms=1)


@pytest.mark.parametrize(
    ("event", "field", "said"),
    [
        (_note(text="a\ud800b"), "text", "surrogates not allowed"),
        (_note(count=2**64), "count", "64-bit"),
        (Anything(channel_id=CHANNEL, value=object(), timestamp_ms=1), "value", "not JSON"),
        (Anything(channel_id=CHANNEL, value=("x", "\udfff"), timestamp_ms=1), "value", "UTF-8"),
    ],
)
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_an_event_canonical_json_cannot_hold_is_refused_naming_its_field(
    event: chanlog.Event, field: str, said: str, backend: str, tmp_path: Path
) -> None:
    opened = MemoryBackend() if backend == "memory" else SqliteBackend(tmp_path / "log.db")
    with EventStore(opened, plugins=_host(), projections=[]) as store:
        with pytest.raises(InvalidEvent) as single:
            store.append(event)
        assert single.value.event_type == event.event_type
        assert single.value.field == field and single.value.rule == UNENCODABLE_RULE
        assert said in str(single.value)
        with pytest.raises(InvalidEvent, match=rf"^batch\[1\]: {event.event_type}\.{field}:"):
            store.append_batch([_note(), event])
        assert len(store) == 0
        assert store.append(_note()) == 0  # the store goes on
    with pytest.raises(InvalidEvent, match=rf"^{event.event_type}\.{field}: must be"):
        _ = event.event_id
    with pytest.raises(InvalidEvent, match=rf"^{event.event_type}\.{field}: must be"):
        canonical_json(event)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010) | st.characters()),
    count=st.integers(min_value=-(2**70), max_value=2**70),
)
def test_any_text_and_integer_either_round_trip_or_are_refused_by_field(
    text: str, count: int
) -> None:
    """Never another exception, and never half a batch."""
    with EventStore(MemoryBackend(), plugins=_host(), projections=[]) as store:
        event = _note(text=text, count=count)
        refused: InvalidEvent | None = None
        try:
            store.append_batch([_note(), event])
        except InvalidEvent as error:
            refused = error
        if refused is not None:
            assert refused.field in {"text", "count"} and refused.index == 1
            assert len(store) == 0
            return
        records = list(store)
        assert len(records) == 2
        assert records[1].event == event and records[1].event_id == event.event_id
