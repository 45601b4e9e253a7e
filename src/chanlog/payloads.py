"""The encode side of the codec: payloads, canonical JSON and event ids.

An event's *payload* is the dict of all its fields, optional fields omitted when ``None``,
amounts as decimal strings. Its canonical JSON is that dict with sorted keys and no
whitespace, strings as raw UTF-8 (orjson escapes only ``"``, ``\\`` and control characters),
which is byte-compatible with the original implementation's golden vectors. The event id is
``"0x" + event_digest(event_type, canonical).hex()`` (:func:`chanlog.hashing.event_digest`).

The append path (:func:`encode_event_raw`) does not go through cattrs: for each event class
whose fields are strings, ints, bools and tuples of strings (every built-in type, and plugin
types declared the same way) it generates, once, an encoder that builds the payload dict with
its keys already in sorted order (optional fields dropped when ``None``, amounts as decimal
strings), so orjson writes it without sorting. The bytes are those of the cattrs path
(``orjson.dumps(to_payload(event), option=OPT_SORT_KEYS)``), which stays the reference: a
test compares the two for every type, and other classes use it directly.

This module sits below :mod:`chanlog.events.base` (which computes ``Event.event_id`` with
it) and :mod:`chanlog.codec` (which re-exports it beside the decode side), and imports
neither, so the three are in no import cycle. It knows an event only as an attrs instance with
an ``event_type`` and an ``event_id`` property that accepts the id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import cattrs
import orjson
from cattrs.gen import make_dict_unstructure_fn, override

from chanlog import codegen
from chanlog.errors import InvalidEvent
from chanlog.hashing import event_digest, event_id_hasher

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_SIZE_RULE",
    "UNENCODABLE_RULE",
    "Encodable",
    "RawEncoder",
    "canonical_json",
    "canonical_json_of_payload",
    "encode_event",
    "encode_event_raw",
    "event_id_of",
    "event_id_of_canonical",
    "raw_encoder",
    "to_payload",
    "too_large",
    "unencodable",
]

RawEncoder = Callable[[Any], tuple[bytes, str, bytes]]


class Encodable(Protocol):
    """What this module needs of an event: an attrs instance of a class with a wire name
    (every :class:`chanlog.Event`)."""

    event_type: ClassVar[str]


def _amount_to_str(value: int) -> str:
    return str(value)


# Unstructuring needs no hooks of its own; the strict structure hooks live in chanlog.codec.
_converter = cattrs.Converter()
_unstructurers: dict[type, Callable[[Any], dict[str, Any]]] = {}


def _unstructurer(cls: type) -> Callable[[Any], dict[str, Any]]:
    fn = _unstructurers.get(cls)
    if fn is None:
        overrides: dict[str, Any] = {}
        for field in codegen.plan_of(cls).fields:
            omit = field.omitted_when_none
            if field.amount:
                overrides[field.name] = override(omit_if_default=omit, unstruct_hook=_amount_to_str)
            else:
                overrides[field.name] = override(omit_if_default=omit)
        fn = make_dict_unstructure_fn(cls, _converter, **overrides)
        _unstructurers[cls] = fn
    return fn


def to_payload(event: Encodable) -> dict[str, Any]:
    """The event's payload: every field, ``None`` omitted, amounts as decimal strings."""
    return _unstructurer(type(event))(event)


def canonical_json_of_payload(payload: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a payload dict: sorted keys, no whitespace, raw UTF-8."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def canonical_json(event: Encodable) -> bytes:
    """The canonical JSON bytes of ``event``'s payload (sorted keys, no whitespace).

    Raises:
        InvalidEvent: a value canonical JSON cannot hold (:func:`unencodable`).
    """
    try:
        return orjson.dumps(_unstructurer(type(event))(event), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise unencodable(event, exc) from None


UNENCODABLE_RULE = "a value canonical JSON can hold (valid Unicode text, integers of 64 bits)"
"""What a field's value must be when the event's own validators let anything through (a
plugin's event type may declare its fields without chanlog's validators)."""


def unencodable(event: Any, error: Exception) -> InvalidEvent:
    """The error for ``event``, whose payload orjson refused with ``error``: it names the
    first field (in payload order) whose value canonical JSON cannot hold. Built-in types
    never get here: their validators refuse such values when the event is built."""
    event_type = getattr(type(event), "event_type", type(event).__name__)
    for field in sorted(codegen.plan_of(type(event)).fields, key=lambda field: field.name):
        value = getattr(event, field.name, None)
        try:
            orjson.dumps(str(value) if field.amount else value)
        except orjson.JSONEncodeError as refused:
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            return InvalidEvent(
                f"{event_type}.{field.name}: must be {UNENCODABLE_RULE}, got {shown} ({refused})",
                event_type=event_type,
                field=field.name,
                rule=UNENCODABLE_RULE,
            )
    return InvalidEvent(
        f"{event_type}: its payload cannot be written as canonical JSON ({error})",
        event_type=event_type,
        rule=UNENCODABLE_RULE,
    )


MAX_PAYLOAD_BYTES = 64 * 1024 * 1024 - 64 * 1024
"""The most bytes an event's canonical JSON may hold (64 MiB less 64 KiB: 67,043,328), on
every backend (ADR 0075). The lowest limit of every part that carries a record: NATS's
``max_payload`` cannot be set above 64 MiB, and a relayed message carries its headers
besides the payload (64 KiB leaves room for them); SQLite holds 1,000,000,000 bytes a value,
PostgreSQL 1 GiB."""

PAYLOAD_SIZE_RULE = f"a canonical JSON payload of at most {MAX_PAYLOAD_BYTES} bytes"
"""The rule an event whose payload is longer than :data:`MAX_PAYLOAD_BYTES` breaks."""


def too_large(event: Any, size: int) -> InvalidEvent:
    """The error for ``event``, whose canonical JSON holds ``size`` bytes, more than
    :data:`MAX_PAYLOAD_BYTES`: it names the field with the largest value (the one to
    shorten), by the length of its text, bytes or items."""
    event_type = getattr(type(event), "event_type", type(event).__name__)
    largest: tuple[int, str] | None = None
    for field in codegen.plan_of(type(event)).fields:
        value = getattr(event, field.name, None)
        length = len(value) if isinstance(value, str | bytes | tuple | list | dict) else 0
        if largest is None or length > largest[0]:
            largest = (length, field.name)
    name = None if largest is None else largest[1]
    where = event_type if name is None else f"{event_type}.{name}"
    return InvalidEvent(
        f"{where}: the payload holds {size} bytes of canonical JSON, and every backend "
        f"holds at most {MAX_PAYLOAD_BYTES} bytes (the rule: {PAYLOAD_SIZE_RULE}); keep "
        "large documents outside the log and record their hash",
        event_type=event_type,
        field=name,
        rule=PAYLOAD_SIZE_RULE,
    )


def event_id_of_canonical(event_type: str, canonical: bytes) -> str:
    """The event id for an event type and its canonical JSON bytes."""
    return "0x" + event_digest(event_type, canonical).hex()


def event_id_of(event: Encodable) -> str:
    """The event id of ``event`` (prefer ``event.event_id``, which caches it)."""
    return event_id_of_canonical(event.event_type, canonical_json(event))


def encode_event(event: Encodable) -> tuple[bytes, str]:
    """Canonical JSON and event id of ``event`` in one pass; caches the id on the event."""
    canonical, event_id, _ = encode_event_raw(event)
    return canonical, event_id


def encode_event_raw(event: Encodable) -> tuple[bytes, str, bytes]:
    """Like :func:`encode_event`, also returning the raw 32-byte id (what backends store).

    The returned bytes are right-sized: orjson hands back an over-allocated buffer, and a
    log that keeps payloads must not pay for the slack.
    """
    encoder = _raw_encoders.get(type(event))
    if encoder is None:
        encoder = _raw_encoder(type(event))
    try:
        return encoder(event)
    except orjson.JSONEncodeError as exc:
        raise unencodable(event, exc) from None


_raw_encoders: dict[type, RawEncoder] = {}


def raw_encoder(cls: type) -> RawEncoder:
    """The function :func:`encode_event_raw` applies to events of ``cls`` (generated once
    per class). The append path keeps it per class and calls it directly, a Python frame
    fewer per event."""
    encoder = _raw_encoders.get(cls)
    return _raw_encoder(cls) if encoder is None else encoder


def _reference_encode_raw(event: Any) -> tuple[bytes, str, bytes]:
    """:func:`encode_event_raw` through cattrs: the definition the generated encoders match,
    and the encoder of classes whose fields go beyond the primitives."""
    canonical = memoryview(canonical_json(event)).tobytes()
    digest = event_digest(event.event_type, canonical)
    event_id = "0x" + digest.hex()
    # The documented way to fill the id cache (the frozen __setattr__ refuses the write).
    object.__setattr__(event, "event_id", event_id)
    return canonical, event_id, digest


def _id_cache_setter(cls: type) -> Callable[[Any, str], None] | None:
    """The setter of ``cls.event_id`` (for an :class:`~chanlog.Event`, the id slot's own
    C-level ``__set__``: filling the cache costs no Python frame), or ``None``."""
    prop = inspect.getattr_static(cls, "event_id", None)
    if isinstance(prop, property) and prop.fset is not None:
        setter: Callable[[Any, str], None] = prop.fset
        return setter
    return None


def _generate_raw_encoder(cls: type) -> RawEncoder | None:
    plan = codegen.plan_of(cls)
    kinds = plan.primitive_types()
    set_event_id = _id_cache_setter(cls)
    if kinds is None or set_event_id is None:
        return None
    ordered = sorted(zip(plan.fields, kinds, strict=True), key=lambda pair: pair[0].name)
    lines = ["def encode(event):"]
    entries: list[tuple[int, str]] = []
    optional: list[int] = []
    for index, (field, kind) in enumerate(ordered):
        lines.append(f"    v{index} = event.{field.name}")
        value = f"v{index}"
        if field.amount:
            value = f"str(v{index})"
        elif kind.primitive is tuple:
            # What cattrs does with any iterable it finds there (only an event built with
            # validation switched off holds anything but a tuple).
            value = f"(v{index} if type(v{index}) is tuple else tuple(v{index}))"
        if field.omitted_when_none:
            optional.append(index)
            if value != f"v{index}":
                # Only the payload with every optional present is built before deleting keys.
                value = f"None if v{index} is None else {value}"
        entries.append((index, f"{field.name!r}: {value}"))
    if len(optional) <= _MAX_PAYLOAD_SHAPES_LOG2:
        # One dict display per combination of present optional fields: no deletions.
        lines.extend(_payload_shapes(entries, optional, set(), "    "))
    else:
        lines.append(f"    payload = {{{', '.join(entry for _, entry in entries)}}}")
        for index in optional:
            # Deleting keeps the order of the other keys: still sorted.
            lines.append(f"    if v{index} is None: del payload[{ordered[index][0].name!r}]")
    lines.extend(
        [
            # b"%b" % data copies orjson's over-allocated buffer into a right-sized one in a
            # single copy (cheaper than any slice or memoryview round trip).
            "    canonical = RIGHT_SIZED % dumps(payload)",
            # hashing.event_id_hasher: event_digest(EVENT_TYPE, canonical), without a frame.
            "    hasher = ID_HASHER.copy()",
            "    hasher.update(canonical)",
            "    digest = hasher.digest()",
            '    event_id = "0x" + digest.hex()',
            "    set_event_id(event, event_id)",
            "    return canonical, event_id, digest",
        ]
    )
    namespace: dict[str, Any] = {
        "EVENT_TYPE": cls.event_type,  # type: ignore[attr-defined]
        "RIGHT_SIZED": b"%b",
        "dumps": orjson.dumps,
        "ID_HASHER": event_id_hasher(cls.event_type),  # type: ignore[attr-defined]
        "set_event_id": set_event_id,
        "str": str,
    }
    encode: RawEncoder = codegen.compile_function(
        "\n".join(lines) + "\n",
        "encode",
        namespace,
        purpose="encode",
        qualname=f"{cls.__module__}.{cls.__qualname__}",
    )
    return encode


_MAX_PAYLOAD_SHAPES_LOG2 = 3


def _payload_shapes(
    entries: list[tuple[int, str]], optional: list[int], absent: set[int], indent: str
) -> list[str]:
    """Nested ``if``s on each optional value being ``None``, each leaf building the payload
    dict (keys in sorted order) of the fields present."""
    if not optional:
        present = ", ".join(entry for index, entry in entries if index not in absent)
        return [f"{indent}payload = {{{present}}}"]
    first, rest = optional[0], optional[1:]
    return [
        f"{indent}if v{first} is None:",
        *_payload_shapes(entries, rest, absent | {first}, indent + "    "),
        f"{indent}else:",
        *_payload_shapes(entries, rest, absent, indent + "    "),
    ]


def _raw_encoder(cls: type) -> RawEncoder:
    encoder = _generate_raw_encoder(cls) or _reference_encode_raw
    _raw_encoders[cls] = encoder
    return encoder
