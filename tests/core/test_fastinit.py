"""The generated event ``__init__`` behaves exactly like attrs' own one, input by input.

Every built-in event class, and plugin classes declared the documented way, get a specialised
``__init__`` (chanlog.events._fastinit). These tests run it side by side with the attrs
``__init__`` it replaced, on valid and hostile values, and require the same outcome: an equal
event, or the same error class with the same field, rule and message.
"""

from __future__ import annotations

import pickle
import re
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import Event, InvalidEvent, fields
from chanlog.events import BUILTIN_EVENT_TYPES, StateSigned
from chanlog_strategies import _BY_NAME, _SPECIAL

B32 = "0x" + "ab" * 32
ADDR = "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0"
SIG = "0x" + "12" * 65

# Characters a sloppy hex check lets through: separators, signs, Unicode digits (Arabic-Indic
# three, fullwidth zero), quotes, a lone surrogate.
HEXISH = '0123456789abcdefABCDEFxX_ +-\t\n\u0663\uff10gG"\\é\ud800'


def _hex_like(digits: int) -> st.SearchStrategy[str]:
    """Strings that are almost ``0x`` + ``digits`` hex digits: the hard cases for a checker."""
    body = st.text(alphabet=HEXISH, min_size=max(digits - 2, 0), max_size=digits + 2)
    prefix = st.sampled_from(["0x", "0X", "", "x0", " 0x", "00", "0x0x", "+0x", "0"])
    return st.builds(lambda p, b: p + b, prefix, body) | st.text(max_size=4)


hostile: st.SearchStrategy[Any] = st.one_of(
    _hex_like(64),
    _hex_like(40),
    _hex_like(130),
    st.integers(min_value=-(2**70), max_value=2**260),
    st.sampled_from([0, 1, -1, 2**64 - 1, 2**64, 2**256 - 1, 2**256, True, False, None]),
    st.floats(allow_nan=False) | st.just(1.0),
    st.binary(max_size=4),
    st.lists(st.sampled_from([ADDR, ADDR.lower(), "0x12", 5]), max_size=4),
    st.text(max_size=8),
    st.sampled_from(["DirectFund", "decode_failed", "other"]),
)


def _valid(cls: type[Event], name: str) -> st.SearchStrategy[Any]:
    key = (cls.event_type, name)
    return _SPECIAL[key] if key in _SPECIAL else _BY_NAME[name]


@st.composite
def kwargs_for(draw: st.DrawFn, cls: type[Event]) -> dict[str, Any]:
    """Keyword arguments for ``cls``: mostly valid, some fields hostile, some optional ones
    left out. ``timestamp_ms`` is always given (its default is the clock)."""
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(cls):
        optional = field.default is not attrs.NOTHING and field.name != "timestamp_ms"
        if optional and draw(st.integers(0, 3)) == 0:
            continue
        if draw(st.integers(0, 4)) == 0:
            kwargs[field.name] = draw(hostile)
        else:
            kwargs[field.name] = draw(_valid(cls, field.name))
    return kwargs


def outcome(make: Any) -> tuple[str, Any]:
    """What calling ``make()`` gives: the event, or the error's class and facts."""
    try:
        return "ok", make()
    except InvalidEvent as exc:
        return "invalid", (str(exc), exc.event_type, exc.field, exc.rule)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def with_attrs_init(cls: type[Event], kwargs: dict[str, Any]) -> Event:
    """Build the event through the attrs-generated ``__init__`` the class had before."""
    # set on the generated __init__ by chanlog.events._fastinit, unknown to its type
    original = cls.__init__.__chanlog_attrs_init__  # type: ignore[attr-defined]
    event: Event = object.__new__(cls)
    original(event, **kwargs)
    return event


def assert_same(cls: type[Event], kwargs: dict[str, Any]) -> None:
    fast = outcome(lambda: cls(**kwargs))
    reference = outcome(lambda: with_attrs_init(cls, kwargs))
    assert fast == reference


def test_every_builtin_type_has_the_generated_init() -> None:
    for cls in BUILTIN_EVENT_TYPES:
        assert hasattr(cls.__init__, "__chanlog_source__"), cls


@pytest.mark.parametrize("cls", BUILTIN_EVENT_TYPES, ids=lambda c: c.event_type)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_init_matches_attrs_init(cls: type[Event], data: st.DataObject) -> None:
    assert_same(cls, data.draw(kwargs_for(cls)))


@settings(max_examples=300)
@given(value=_hex_like(64) | _hex_like(40) | _hex_like(130) | st.text(max_size=140))
def test_hex_check_equals_the_regular_expression(value: str) -> None:
    for validator, digits in ((fields.bytes32, 64), (fields.address, 40), (fields.signature, 130)):
        expected = re.fullmatch(rf"0x[0-9a-fA-F]{{{digits}}}", value) is not None
        assert validator.accepts(value) is expected
        assert_same(StateSigned, {**_signed(), "channel_id": value, "signature": value})


def _signed(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "channel_id": B32,
        "turn_num": 1,
        "state_hash": B32,
        "signer": ADDR,
        "signature": SIG,
        "timestamp_ms": 5,
    }
    return values | changes


@pytest.mark.parametrize(
    "value",
    [
        "0x" + "ab" * 31 + "a ",  # trailing space: bytes.fromhex would accept it
        "0x" + "ab" * 31 + "_a",  # int(..., 16) would accept the underscore
        "0X" + "ab" * 32,
        "00" + "ab" * 32,
        "ab0x" + "ab" * 31,  # "0x" present, but not in front
        "0x" + "ab" * 31 + "٣٣",  # non-ASCII digits
        "0x" + "ab" * 31 + "0x",
        "0x" + "ab" * 32 + "\n",
    ],
)
def test_near_miss_hex_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        StateSigned(**_signed(state_hash=value))
    assert info.value.field == "state_hash"
    assert "bytes32" in str(info.value.rule)


def test_first_failing_field_in_declaration_order_is_reported() -> None:
    with pytest.raises(InvalidEvent) as info:
        StateSigned(**_signed(turn_num=-1, signature="0x12", channel_id="nope"))
    assert info.value.field == "channel_id"
    with pytest.raises(InvalidEvent) as info:
        StateSigned(**_signed(app_data_hash="0x1", turn_num=-1))
    assert info.value.field == "turn_num"


def test_evolve_validates_and_keeps_attrs_behaviour() -> None:
    event = StateSigned(**_signed())
    assert attrs.evolve(event, turn_num=2).turn_num == 2
    with pytest.raises(InvalidEvent, match="turn_num"):
        attrs.evolve(event, turn_num=-2)
    assert attrs.asdict(event)["turn_num"] == 1
    assert "turn_num=1" in repr(event)
    assert pickle.loads(pickle.dumps(event)) == event


def test_disabled_validators_are_honoured_like_attrs() -> None:
    with attrs.validators.disabled():
        event = StateSigned(**_signed(turn_num=-1))
    assert event.turn_num == -1
    with pytest.raises(InvalidEvent):
        StateSigned(**_signed(turn_num=-1))


def test_missing_and_unknown_arguments_are_type_errors() -> None:
    with pytest.raises(TypeError, match="channel_id"):
        StateSigned(**{k: v for k, v in _signed().items() if k != "channel_id"})
    with pytest.raises(TypeError, match="bogus"):
        StateSigned(**_signed(bogus=1))


# -- plugin event types -------------------------------------------------------------------


def _cross_check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # A custom validator that looks at another field: it runs once every slot is set.
    if value > instance.limit:
        raise InvalidEvent("over the limit", event_type="custom", field=attribute.name)


@attrs.define(frozen=True, slots=True, kw_only=True)
class Documented(Event):
    """A plugin event declared the documented way, with every kind of field."""

    event_type: ClassVar[str] = "documented"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)

    channel_id: str = attrs.field(validator=fields.bytes32)
    limit: int = attrs.field(default=10, validator=fields.uint)
    used: int = attrs.field(validator=_cross_check)
    note: str = attrs.field(factory=str, validator=fields.text(max_length=8))
    members: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=fields.optional_tuple,
        validator=fields.optional(fields.participants()),
    )
    kind: str | None = attrs.field(default=None, validator=fields.optional(fields.one_of("a")))
    tip: int | None = attrs.field(
        default=None, validator=fields.optional(fields.amount), metadata=fields.AMOUNT
    )
    # mypy's attrs plugin reads no method as a converter; the generated init must
    shout: str = attrs.field(default="x", converter=str.upper)  # type: ignore[misc]
    both: int = attrs.field(default=0, validator=[fields.uint, attrs.validators.lt(5)])


def test_documented_plugin_type_gets_the_generated_init() -> None:
    assert hasattr(Documented.__init__, "__chanlog_source__")
    event = Documented(channel_id=B32, used=3, members=[ADDR, "0x" + "cd" * 20], timestamp_ms=1)
    assert event.members == (ADDR, "0x" + "cd" * 20)
    assert event.note == "" and event.shout == "X"


@settings(max_examples=300)
@given(
    channel_id=st.sampled_from([B32, "0x12", 7]),
    limit=st.sampled_from([0, 10, -1]),
    used=st.sampled_from([0, 5, 11]),
    note=st.sampled_from(["", "123456789", 5]),
    members=st.sampled_from([None, [ADDR, ADDR.lower()], [ADDR, "0x" + "cd" * 20], "x"]),
    kind=st.sampled_from([None, "a", "b"]),
    tip=st.sampled_from([None, 2**255, -1, "5"]),
    shout=st.sampled_from(["a", "B"]),
    both=st.sampled_from([0, 4, 5, -1]),
)
def test_documented_plugin_type_matches_attrs_init(**kwargs: Any) -> None:
    assert_same(Documented, kwargs | {"timestamp_ms": 3})
    with attrs.validators.disabled():
        assert_same(Documented, kwargs | {"timestamp_ms": 3})


def test_custom_validator_runs_after_the_inlined_ones_in_field_order() -> None:
    with pytest.raises(InvalidEvent) as info:
        Documented(channel_id=B32, used=11, note="123456789")
    assert info.value.field == "used"  # declared before note
    with pytest.raises(InvalidEvent) as info:
        Documented(channel_id="bad", used=11)
    assert info.value.field == "channel_id"


@pytest.mark.parametrize("cls", BUILTIN_EVENT_TYPES, ids=lambda c: c.event_type)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_init_matches_attrs_init_with_validators_off(
    cls: type[Event], data: st.DataObject
) -> None:
    # The generated __init__ evaluates its inlined checks before asking whether validators
    # are off: on hostile values too, that must end as attrs' does (the event, unchecked).
    kwargs = data.draw(kwargs_for(cls))
    with attrs.validators.disabled():
        assert_same(cls, kwargs)


def test_classes_attrs_init_is_kept_for() -> None:
    seen: list[int] = []

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class PostInit(Event):
        event_type: ClassVar[str] = "post-init"
        value: int = attrs.field(validator=fields.uint)

        def __attrs_post_init__(self) -> None:
            seen.append(self.value)

    @attrs.define(frozen=True, slots=True)
    class Positional(Event):
        event_type: ClassVar[str] = "positional"
        value: int = attrs.field(validator=fields.uint, kw_only=False)

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class SelfFactory(Event):
        event_type: ClassVar[str] = "self-factory"
        value: int = attrs.field(
            default=attrs.Factory(lambda self: self.timestamp_ms, takes_self=True)
        )

    for cls in (PostInit, Positional, SelfFactory):
        assert not hasattr(cls.__init__, "__chanlog_source__"), cls
    PostInit(value=4, timestamp_ms=0)
    assert seen == [4]
    assert Positional(3, timestamp_ms=0).value == 3
    assert SelfFactory(timestamp_ms=9).value == 9
    with pytest.raises(InvalidEvent, match="value"):
        PostInit(value=-1)


# -- the id cache -------------------------------------------------------------------------


def test_event_id_cache_is_outside_the_fields() -> None:
    event = StateSigned(**_signed())
    first = event.event_id
    assert event.event_id is first
    assert "_event_id" not in attrs.fields_dict(StateSigned)
    assert "event_id" not in repr(event)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.event_id = "0x00"
    other = StateSigned(**_signed())
    object.__setattr__(other, "event_id", first)  # what a reader that knows the id does
    assert other.event_id is first
    assert other == event and hash(other) == hash(event)


def test_events_have_no_getattr_hook() -> None:
    # A class-level __getattr__ (which attrs adds for a cached_property on a slotted class)
    # keeps CPython from specialising attribute reads on every event.
    for cls in (*BUILTIN_EVENT_TYPES, Documented):
        assert all("__getattr__" not in vars(klass) for klass in cls.__mro__), cls
