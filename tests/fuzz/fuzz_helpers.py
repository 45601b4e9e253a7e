"""What the fuzz suite feeds chanlog: random JSON, real encoded events and ways to damage
bytes and JSON data, and the one check every fuzz test makes (only a ChanlogError escapes)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from chanlog import codec
from chanlog.cli.demo_events import demo_events
from chanlog.errors import ChanlogError
from chanlog.events import BUILTIN_EVENT_TYPES, Event, ObjectiveCreated, ObjectiveRejected
from chanlog.plugins import default_host
from chanlog.testing import sample_events
from chanlog.testing.events import bytes32_of
from chanlog.workload import Workload
from chanlog_strategies import any_event

TYPES = default_host().event_types
VECTORS = sorted((Path(__file__).parent.parent / "data" / "vectors").glob("*.golden.json"))


def _golden_events() -> list[Event]:
    events = []
    for path in VECTORS:
        vector = json.loads(path.read_text())
        events.append(codec.decode_event(vector["event_name"], vector["payload"], TYPES))
    return events


def objectives_of_samples(objectives: int = 4) -> list[Event]:
    """The objectives :func:`chanlog.testing.sample_events` refer to, so a store with every
    projection accepts the samples."""
    return [
        ObjectiveCreated(
            objective_id=bytes32_of(f"objective:{number}"),
            objective_type="DirectFund",
            timestamp_ms=1_700_000_000_000,
        )
        for number in range(objectives)
    ]


def workload_events() -> list[Event]:
    """A small generated log touching almost every built-in event type (challenges,
    rejections, drops), valid for every built-in projection."""
    return list(
        Workload(
            channels=3,
            turns=3,
            seed=7,
            challenge_probability=1.0,
            reject_probability=0.3,
            drop_probability=0.5,
        )
    )


REAL_EVENTS: list[Event] = [
    *_golden_events(),
    *demo_events(),
    *sample_events(8),
    *workload_events()[:60],
    ObjectiveRejected(
        objective_id=bytes32_of("rejected"),
        reason="pär says no",
        error_code="E42",
        timestamp_ms=1,
    ),
]
"""Real events of (nearly) every type, as the log writes them."""

# -- random values -----------------------------------------------------------------------

# Text as JSON can carry it, and text it cannot: lone surrogates. (st.text() over this
# union would drop the surrogates again, hence the lists.)
characters = st.characters() | st.characters(categories=["Cs"])
any_text = st.text(max_size=20) | st.lists(characters, max_size=20).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
"""Random JSON-like values (floats include NaN and infinities; strings may hold lone
surrogates, which JSON cannot)."""

event_types = st.sampled_from(sorted(TYPES)) | any_text
real_events = st.sampled_from(REAL_EVENTS) | any_event


def payload_of(event: Event) -> dict[str, Any]:
    return codec.to_payload(event)


# -- damage ------------------------------------------------------------------------------


@st.composite
def damaged_bytes(draw: st.DrawFn, original: bytes, *, max_edits: int = 4) -> bytes:
    """``original`` with 1..``max_edits`` edits: flipped bits, truncation, inserted,
    deleted or overwritten bytes."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, max_edits))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "replace":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


def _slots(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into ``value`` (the empty path is the value itself)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _slots(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _slots(item, (*path, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        if isinstance(value, dict):
            return {**value, head: _delete(value[head], rest)}
        copy = list(value)
        copy[head] = _delete(copy[head], rest)
        return copy
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if key != head}
    return [item for index, item in enumerate(value) if index != head]


def _tweaked(draw: st.DrawFn, value: Any) -> Any:
    """A value of the same JSON type as ``value``, close to it or not: what gets past the
    type checks and into the validators."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return draw(
            st.sampled_from([value + 1, value - 1, -value, 2**64, 2**256, -1, 0])
            | st.integers(-(2**300), 2**300)
        )
    if isinstance(value, str):
        at = draw(st.integers(0, len(value)))
        kind = draw(st.sampled_from(["insert", "replace", "case", "cut", "any"]))
        char = draw(characters)
        if kind == "insert":
            return value[:at] + char + value[at:]
        if kind == "replace":
            return value[:at] + char + value[at + 1 :]
        if kind == "case":
            return value.swapcase()
        if kind == "cut":
            return value[:at]
        return draw(any_text)
    if isinstance(value, list):
        if len(value) > 0 and draw(st.booleans()):
            return value[1:]
        return [*value, value[0] if value else draw(json_scalars)]
    return draw(json_values)


@st.composite
def damaged_json(draw: st.DrawFn, original: Any, *, max_edits: int = 3) -> Any:
    """``original`` (JSON data) with 1..``max_edits`` values tweaked (same type: a changed
    character, a neighbouring number), replaced by random JSON values, deleted, or given an
    extra key."""
    value = original
    for _ in range(draw(st.integers(1, max_edits))):
        paths = list(_slots(value))
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["tweak", "tweak", "replace", "delete", "add"]))
        if kind == "tweak":
            target: Any = value
            for step in path:
                target = target[step]
            value = _replace(value, path, _tweaked(draw, target))
        elif kind == "delete" and path:
            value = _delete(value, path)
        elif kind == "add":
            target = value
            for step in path:
                target = target[step]
            if isinstance(target, dict):
                key = draw(st.text(max_size=12))
                value = _replace(value, path, {**target, key: draw(json_values)})
            else:
                value = _replace(value, path, draw(json_values))
        else:
            value = _replace(value, path, draw(json_values))
    return value


def to_json(value: Any) -> bytes:
    """``value`` as JSON bytes when orjson can write it (else any bytes Python's json
    module makes of it: NaN, lone surrogates escaped...)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode("utf-8", "surrogatepass")


# -- the check ---------------------------------------------------------------------------


@contextlib.contextmanager
def only_chanlog_errors() -> Iterator[None]:
    """Let a :class:`~chanlog.errors.ChanlogError` pass silently; anything else fails the
    test (it propagates with its traceback, which is what the fuzz test is looking for)."""
    with contextlib.suppress(ChanlogError):
        yield


__all__ = [
    "BUILTIN_EVENT_TYPES",
    "REAL_EVENTS",
    "TYPES",
    "any_text",
    "damaged_bytes",
    "damaged_json",
    "event_types",
    "json_values",
    "objectives_of_samples",
    "only_chanlog_errors",
    "payload_of",
    "real_events",
    "to_json",
    "workload_events",
]
