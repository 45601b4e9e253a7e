"""Canonical JSON, event ids, and decoding.

An event's *payload* is the dict of all its fields, optional fields omitted when ``None``,
amounts as decimal strings. Its canonical JSON is that dict with sorted keys and no
whitespace, strings as raw UTF-8 (orjson escapes only ``"``, ``\\`` and control characters),
which is byte-compatible with the original implementation's golden vectors. The event id is
``"0x" + hex(keccak256(b"ev1|" + event_type + b"|" + canonical))``.

cattrs generates one specialised (un)structure function per event class, with strict hooks:
JSON ``"5"`` is not an int and ``5`` is not a string. Every failure is a
:class:`~chanlog.errors.DecodeError` naming the event type and the field path.

The append path (:func:`encode_event_raw`) does not go through cattrs: for each event class
whose fields are strings, ints, bools and tuples of strings (every built-in type, and plugin
types declared the same way) it generates, once, an encoder that builds the payload dict with
its keys already in sorted order (optional fields dropped when ``None``, amounts as decimal
strings), so orjson writes it without sorting, and hashes it behind a prebuilt
``b"ev1|<type>|"`` prefix. The bytes are those of the cattrs path
(``orjson.dumps(to_payload(event), option=OPT_SORT_KEYS)``), which stays the reference: a
test compares the two for every type, and other classes use it directly.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from chanlog.errors import DecodeError, InvalidEvent
from chanlog.events import base as _event_base
from chanlog.events.base import Event
from chanlog.fields import MAX_AMOUNT
from chanlog.hashing import _keccak_256, keccak256

__all__ = [
    "canonical_json",
    "canonical_json_of_payload",
    "decode_envelope",
    "decode_event",
    "decode_payload",
    "encode_event",
    "encode_event_raw",
    "event_id_of",
    "event_id_of_canonical",
    "from_payload",
    "to_payload",
]

E = TypeVar("E", bound=Event)

_ID_PREFIX = b"ev1|"


def _strict(expected: type, name: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        if type(value) is not expected:
            raise TypeError(f"must be {name}, got {type(value).__name__} {_short(value)}")
        return value

    return hook


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _structure_str_tuple(value: Any, _type: Any) -> tuple[str, ...]:
    if type(value) is not list:
        raise TypeError(f"must be a list of strings, got {type(value).__name__}")
    for position, item in enumerate(value):
        if type(item) is not str:
            raise TypeError(f"[{position}] must be a string, got {type(item).__name__}")
    return tuple(value)


def _structure_amount(value: Any, _type: Any) -> int:
    """Amounts travel as decimal strings; plain JSON ints are accepted on input too."""
    if type(value) is int:
        number = value
    elif type(value) is str and value.isascii() and value.isdigit():
        if len(value) > 1 and value[0] == "0":
            raise TypeError(f"must be a decimal string without leading zeros, got {value!r}")
        number = int(value)
    else:
        raise TypeError(f"must be a decimal string amount, got {_short(value)}")
    if not 0 <= number < MAX_AMOUNT:
        raise TypeError(f"must be in [0, 2**256), got {_short(value)}")
    return number


def _amount_to_str(value: int) -> str:
    return str(value)


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_converter.register_structure_hook(int, _strict(int, "an int"))
_converter.register_structure_hook(str, _strict(str, "a string"))
_converter.register_structure_hook(bool, _strict(bool, "a bool"))
_converter.register_structure_hook_func(
    lambda type_: type_ == tuple[str, ...], _structure_str_tuple
)

_unstructurers: dict[type, Callable[[Any], dict[str, Any]]] = {}
_structurers: dict[type, Callable[[Mapping[str, Any], Any], Any]] = {}


def _field_overrides(cls: type, *, structure: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for field in attrs.fields(cls):
        is_amount = bool(field.metadata.get("chanlog_amount"))
        if structure:
            if is_amount:
                overrides[field.name] = override(struct_hook=_structure_amount)
        else:
            omit = field.default is None
            if is_amount:
                overrides[field.name] = override(omit_if_default=omit, unstruct_hook=_amount_to_str)
            else:
                overrides[field.name] = override(omit_if_default=omit)
    return overrides


def _unstructurer(cls: type) -> Callable[[Any], dict[str, Any]]:
    fn = _unstructurers.get(cls)
    if fn is None:
        fn = make_dict_unstructure_fn(cls, _converter, **_field_overrides(cls, structure=False))
        _unstructurers[cls] = fn
    return fn


def _structurer(cls: type) -> Callable[[Mapping[str, Any], Any], Any]:
    fn = _structurers.get(cls)
    if fn is None:
        fn = make_dict_structure_fn(
            cls,
            _converter,
            _cattrs_forbid_extra_keys=True,
            _cattrs_detailed_validation=True,
            **_field_overrides(cls, structure=True),
        )
        _structurers[cls] = fn
    return fn


def to_payload(event: Event) -> dict[str, Any]:
    """The event's payload: every field, ``None`` omitted, amounts as decimal strings."""
    return _unstructurer(type(event))(event)


def canonical_json_of_payload(payload: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a payload dict: sorted keys, no whitespace, raw UTF-8."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def canonical_json(event: Event) -> bytes:
    """The canonical JSON bytes of ``event``."""
    return orjson.dumps(_unstructurer(type(event))(event), option=orjson.OPT_SORT_KEYS)


def event_id_of_canonical(event_type: str, canonical: bytes) -> str:
    """The event id for an event type and its canonical JSON bytes."""
    return "0x" + keccak256(_ID_PREFIX + event_type.encode() + b"|" + canonical).hex()


def event_id_of(event: Event) -> str:
    """The event id of ``event`` (prefer ``event.event_id``, which caches it)."""
    return event_id_of_canonical(event.event_type, canonical_json(event))


def encode_event(event: Event) -> tuple[bytes, str]:
    """Canonical JSON and event id of ``event`` in one pass; caches the id on the event."""
    canonical, event_id, _ = encode_event_raw(event)
    return canonical, event_id


def encode_event_raw(event: Event) -> tuple[bytes, str, bytes]:
    """Like :func:`encode_event`, also returning the raw 32-byte id (what backends store).

    The returned bytes are right-sized: orjson hands back an over-allocated buffer, and a
    log that keeps payloads must not pay for the slack.
    """
    encoder = _raw_encoders.get(type(event))
    if encoder is None:
        encoder = _raw_encoder(type(event))
    return encoder(event)


_raw_encoders: dict[type, Callable[[Any], tuple[bytes, str, bytes]]] = {}
# Pre-filling the event's id cache saves a re-encode when the id is asked for.
_set_event_id: Callable[[Any, str], None] = _event_base._set_event_id


def _reference_encode_raw(event: Event) -> tuple[bytes, str, bytes]:
    """:func:`encode_event_raw` through cattrs: the definition the generated encoders match,
    and the encoder of classes whose fields go beyond the primitives."""
    canonical = memoryview(canonical_json(event)).tobytes()
    digest = keccak256(_ID_PREFIX + event.event_type.encode() + b"|" + canonical)
    event_id = "0x" + digest.hex()
    _set_event_id(event, event_id)
    return canonical, event_id, digest


def _strip_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); anything else unchanged."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _primitive(annotation: Any) -> bool:
    """True for ``str``, ``int``, ``bool``, ``tuple[str, ...]`` and their ``| None`` forms:
    the types cattrs unstructures as themselves (orjson writes a tuple as a list)."""
    annotation = _strip_none(annotation)
    if annotation in (str, int, bool):
        return True
    return bool(annotation == tuple[str, ...])


def _generate_raw_encoder(cls: type) -> Callable[[Any], tuple[bytes, str, bytes]] | None:
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):
        return None
    fields = attrs.fields(cls)
    if not all(field.name in hints and _primitive(hints[field.name]) for field in fields):
        return None
    ordered = sorted(fields, key=lambda field: field.name)
    lines = ["def encode(event):"]
    entries: list[tuple[int, str]] = []
    for index, field in enumerate(ordered):
        lines.append(f"    v{index} = event.{field.name}")
        value = f"v{index}"
        if field.metadata.get("chanlog_amount"):
            value = f"str(v{index})"
        elif typing.get_origin(_strip_none(hints[field.name])) is tuple:
            # What cattrs does with any iterable it finds there (only an event built with
            # validation switched off holds anything but a tuple).
            value = f"(v{index} if type(v{index}) is tuple else tuple(v{index}))"
        if value != f"v{index}" and field.default is None:
            # Only the payload with every optional present is built before deleting keys.
            value = f"None if v{index} is None else {value}"
        entries.append((index, f"{field.name!r}: {value}"))
    optional = [index for index, field in enumerate(ordered) if field.default is None]
    if len(optional) <= _MAX_PAYLOAD_SHAPES_LOG2:
        # One dict display per combination of present optional fields: no deletions.
        lines.extend(_payload_shapes(entries, optional, set(), "    "))
    else:
        lines.append(f"    payload = {{{', '.join(entry for _, entry in entries)}}}")
        for index in optional:
            # Deleting keeps the order of the other keys: still sorted.
            lines.append(f"    if v{index} is None: del payload[{ordered[index].name!r}]")
    lines.extend(
        [
            # prefix + orjson's over-allocated buffer makes a right-sized copy to hash; the
            # canonical bytes are sliced (copied) out of it.
            "    whole = PREFIX + dumps(payload)",
            "    digest = keccak(whole).digest()",
            '    event_id = "0x" + digest.hex()',
            "    set_event_id(event, event_id)",
            "    return whole[SKIP:], event_id, digest",
        ]
    )
    prefix = _ID_PREFIX + cls.event_type.encode() + b"|"  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {
        "PREFIX": prefix,
        "SKIP": len(prefix),
        "dumps": orjson.dumps,
        "keccak": _keccak_256,
        "set_event_id": _set_event_id,
        "str": str,
    }
    # The source is generated from the attrs field names above, never from input.
    exec("\n".join(lines), namespace)
    encode: Callable[[Any], tuple[bytes, str, bytes]] = namespace["encode"]
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


def _raw_encoder(cls: type) -> Callable[[Any], tuple[bytes, str, bytes]]:
    encoder = _generate_raw_encoder(cls) or _reference_encode_raw
    _raw_encoders[cls] = encoder
    return encoder


def _path_and_reason(exc: BaseException) -> tuple[str | None, str]:
    messages = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
    first = messages[0] if messages else str(exc)
    reason, _, where = first.rpartition(" @ ")
    if not reason:
        return None, first
    path = where.removeprefix("$").removeprefix(".") or None
    return path, reason


def _find_invalid_event(exc: BaseException) -> InvalidEvent | None:
    """cattrs wraps what the attrs validators raise; find our own error inside."""
    if isinstance(exc, InvalidEvent):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_invalid_event(inner)
            if found is not None:
                return found
    return None


def _format_exception(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return "unknown field(s) " + ", ".join(sorted(exc.extra_fields))
    return str(exc)


def from_payload(cls: type[E], payload: Any, *, offset: int | None = None) -> E:
    """Build an event of class ``cls`` from a payload mapping, strictly.

    Raises:
        DecodeError: naming the event type and the field path of the first problem.
    """
    event_type = cls.event_type
    where = f" at offset {offset}" if offset is not None else ""
    if not isinstance(payload, Mapping):
        raise DecodeError(
            f"{event_type}{where}: payload must be a JSON object, got {type(payload).__name__}",
            event_type=event_type,
            offset=offset,
        )
    try:
        event: E = _structurer(cls)(payload, cls)
    except InvalidEvent as exc:
        raise DecodeError(
            f"{exc}{where}", event_type=event_type, path=exc.field, offset=offset
        ) from exc
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        invalid = _find_invalid_event(exc)
        if invalid is not None:
            raise DecodeError(
                f"{invalid}{where}", event_type=event_type, path=invalid.field, offset=offset
            ) from exc
        path, reason = _path_and_reason(exc)
        shown = f".{path}" if path else ""
        raise DecodeError(
            f"{event_type}{shown}{where}: {reason}", event_type=event_type, path=path, offset=offset
        ) from exc
    return event


def decode_payload(data: bytes, *, event_type: str | None = None) -> Any:
    """Parse JSON bytes, turning malformed input into :class:`DecodeError`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(
            f"{event_type or 'event'}: malformed JSON: {exc}", event_type=event_type
        ) from exc


def decode_event(
    event_type: str,
    data: bytes | Mapping[str, Any],
    types: Mapping[str, type[Event]],
    *,
    offset: int | None = None,
) -> Event:
    """Decode canonical JSON bytes (or an already-parsed payload) of ``event_type``.

    Raises:
        DecodeError: unknown type, malformed JSON, missing/unknown/ill-typed field or a value
            the event's validators refuse.
    """
    cls = types.get(event_type) if type(event_type) is str else None
    if cls is None:
        raise DecodeError(
            f"unknown event type {event_type!r}", event_type=str(event_type), offset=offset
        )
    payload = decode_payload(data, event_type=event_type) if isinstance(data, bytes) else data
    return from_payload(cls, payload, offset=offset)


def decode_envelope(
    envelope: Any, types: Mapping[str, type[Event]], *, offset: int | None = None
) -> Event:
    """Decode ``{"type": wire name, "payload": {...}}`` (the import/export line format).

    An optional ``"event_id"`` key must match the id computed from the payload: a line whose
    payload was altered after export is refused rather than silently given a new identity.
    Other keys written by ``chanlog export`` (``offset``, ``chain_hash``) are ignored.
    """
    if not isinstance(envelope, Mapping):
        raise DecodeError(
            f"an event envelope must be a JSON object, got {type(envelope).__name__}",
            offset=offset,
        )
    event_type = envelope.get("type")
    if type(event_type) is not str:
        raise DecodeError('an event envelope needs a string "type"', path="type", offset=offset)
    if "payload" not in envelope:
        raise DecodeError(
            f'{event_type}: the envelope has no "payload"', event_type=event_type, path="payload"
        )
    event = decode_event(event_type, envelope["payload"], types, offset=offset)
    claimed = envelope.get("event_id")
    if claimed is not None and claimed != event.event_id:
        raise DecodeError(
            f"{event_type}: event_id {claimed!r} does not match the payload ({event.event_id})",
            event_type=event_type,
            path="event_id",
            offset=offset,
        )
    return event
