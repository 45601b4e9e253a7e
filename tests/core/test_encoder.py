"""The generated append-path encoder writes exactly the bytes of the cattrs reference path.

``codec.encode_event_raw`` (defined in ``chanlog.payloads``) builds each class's payload with
its keys already sorted; ``payloads._reference_encode_raw`` is the definition (cattrs
unstructure, ``orjson.dumps(..., OPT_SORT_KEYS)``). Both hash through ``event_digest``; the
``reference`` below spells the id formula out independently.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import Event, InvalidEvent, codec, fields, payloads
from chanlog.events import BUILTIN_EVENT_TYPES
from chanlog.hashing import keccak256
from chanlog_strategies import event_of


def reference(event: Event) -> tuple[bytes, str, bytes]:
    try:
        canonical = orjson.dumps(codec.to_payload(event), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # which the encoders raise as an InvalidEvent
        raise InvalidEvent(str(exc)) from exc
    digest = keccak256(b"ev1|" + event.event_type.encode() + b"|" + canonical)
    return canonical, "0x" + digest.hex(), digest


def fresh(event: Event) -> Event:
    """A copy without a cached id, so each encoder starts from the same state (validation
    off: some tests encode values no validator accepts)."""
    with attrs.validators.disabled():
        return attrs.evolve(event)


def outcome(encode: Any, event: Event) -> tuple[str, Any]:
    try:
        return "ok", encode(event)
    except Exception as exc:
        return type(exc).__name__, None


@pytest.mark.parametrize("cls", BUILTIN_EVENT_TYPES, ids=lambda c: c.event_type)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_encoder_equals_reference(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(event_of(cls))
    encoder = payloads._raw_encoders.get(cls) or payloads._raw_encoder(cls)
    assert encoder is not payloads._reference_encode_raw
    canonical, event_id, digest = codec.encode_event_raw(fresh(event))
    assert (canonical, event_id, digest) == reference(event)
    assert payloads._reference_encode_raw(fresh(event)) == (canonical, event_id, digest)
    assert type(canonical) is bytes
    again = fresh(event)
    codec.encode_event_raw(again)
    assert again.event_id == event_id  # the id cache was filled


# Values no validator would let through, written with validation switched off: the generated
# encoder must still agree with the reference (same bytes, or the same kind of failure).
odd_values = st.one_of(
    st.text(max_size=6),
    st.sampled_from(['"', "\\", "\x00", "é", "\ud800", "0x" + "ab" * 32]),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=3).map(tuple),
)


@pytest.mark.parametrize("cls", BUILTIN_EVENT_TYPES, ids=lambda c: c.event_type)
@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_encoder_agrees_on_unvalidated_values(
    cls: type[Event], data: st.DataObject
) -> None:
    base = data.draw(event_of(cls))
    name = data.draw(st.sampled_from([f.name for f in attrs.fields(cls)]))
    value = data.draw(odd_values)
    with attrs.validators.disabled():
        event = attrs.evolve(base, **{name: value})
    assert outcome(codec.encode_event_raw, fresh(event)) == outcome(reference, event)


@attrs.define(frozen=True, slots=True, kw_only=True)
class ManyOptionals(Event):
    """More optional fields than the encoder writes one dict display per combination for."""

    event_type: ClassVar[str] = "many-optionals"
    stream_fields: ClassVar[tuple[str, ...]] = ()

    zeta: int = attrs.field(validator=fields.uint)
    alpha: str | None = attrs.field(default=None, validator=fields.optional(fields.text()))
    gamma: int | None = attrs.field(
        default=None, validator=fields.optional(fields.amount), metadata=fields.AMOUNT
    )
    beta: bool | None = attrs.field(default=None, validator=fields.optional(fields.bool_))
    delta: tuple[str, ...] | None = attrs.field(default=None, converter=fields.optional_tuple)
    omega: int = attrs.field(default=0, validator=fields.amount, metadata=fields.AMOUNT)


@settings(max_examples=200)
@given(
    zeta=st.integers(0, 2**64 - 1),
    alpha=st.none() | st.text(max_size=5),
    gamma=st.none() | st.integers(0, 2**256 - 1),
    beta=st.none() | st.booleans(),
    delta=st.none() | st.lists(st.text(max_size=3), max_size=3),
    omega=st.integers(0, 2**256 - 1),
    timestamp_ms=st.integers(0, 2**64 - 1),
)
def test_plugin_type_with_many_optionals(**kwargs: Any) -> None:
    event = ManyOptionals(**kwargs)
    assert payloads._raw_encoder(ManyOptionals) is not payloads._reference_encode_raw
    assert codec.encode_event_raw(fresh(event)) == reference(event)


def test_plugin_type_beyond_primitives_uses_the_reference_path() -> None:
    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Ratio(Event):
        event_type: ClassVar[str] = "ratio"
        ratio: float = attrs.field(default=0.5)

    assert payloads._raw_encoder(Ratio) is payloads._reference_encode_raw
    event = Ratio(ratio=0.25, timestamp_ms=1)
    assert codec.encode_event_raw(fresh(event)) == reference(event)
