"""Canonical JSON, event ids, and decoding.

The encode side (payloads, canonical JSON, event ids, the generated append-path encoders)
lives in :mod:`chanlog.payloads` and is re-exported here, so ``chanlog.codec`` stays the one
place to import the codec from. See that module for the payload and canonical JSON rules; the
event id is ``"0x" + event_digest(event_type, canonical).hex()``
(:func:`chanlog.hashing.event_digest`).

cattrs generates one specialised structure function per event class, with strict hooks:
JSON ``"5"`` is not an int and ``5`` is not a string. Every failure is a
:class:`~chanlog.errors.DecodeError` naming the event type and the field path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, override

from chanlog import codegen
from chanlog.errors import DecodeError, InvalidEvent
from chanlog.events.base import Event
from chanlog.fields import MAX_AMOUNT
from chanlog.payloads import (
    canonical_json,
    canonical_json_of_payload,
    encode_event,
    encode_event_raw,
    event_id_of,
    event_id_of_canonical,
    to_payload,
)

__all__ = [
    "ENVELOPE_KEYS",
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


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_converter.register_structure_hook(int, _strict(int, "an int"))
_converter.register_structure_hook(str, _strict(str, "a string"))
_converter.register_structure_hook(bool, _strict(bool, "a bool"))
_converter.register_structure_hook_func(
    lambda type_: type_ == tuple[str, ...], _structure_str_tuple
)

_structurers: dict[type, Callable[[Mapping[str, Any], Any], Any]] = {}


def _structurer(cls: type) -> Callable[[Mapping[str, Any], Any], Any]:
    fn = _structurers.get(cls)
    if fn is None:
        overrides: dict[str, Any] = {
            field.name: override(struct_hook=_structure_amount)
            for field in codegen.plan_of(cls).fields
            if field.amount
        }
        fn = make_dict_structure_fn(
            cls,
            _converter,
            _cattrs_forbid_extra_keys=True,
            _cattrs_detailed_validation=True,
            **overrides,
        )
        _structurers[cls] = fn
    return fn


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


ENVELOPE_KEYS = frozenset({"type", "payload", "event_id", "offset", "chain_hash", "unregistered"})
"""The keys an import/export line may have: the envelope's ``type``, ``payload`` and
``event_id``, and what ``chanlog export`` and ``chanlog log --json`` add."""


def decode_envelope(
    envelope: Any, types: Mapping[str, type[Event]], *, offset: int | None = None
) -> Event:
    """Decode ``{"type": wire name, "payload": {...}}`` (the import/export line format).

    An optional ``"event_id"`` key must match the id computed from the payload: a line whose
    payload was altered after export is refused rather than silently given a new identity.
    Other keys written by ``chanlog export`` and ``chanlog log --json`` (``offset``,
    ``chain_hash``, ``unregistered``) are read by their callers; any other key is refused
    (:data:`ENVELOPE_KEYS`): a misspelt ``event_id`` would otherwise turn its check off.
    """
    if not isinstance(envelope, Mapping):
        raise DecodeError(
            f"an event envelope must be a JSON object, got {type(envelope).__name__}",
            offset=offset,
        )
    event_type = envelope.get("type")
    if type(event_type) is not str:
        raise DecodeError('an event envelope needs a string "type"', path="type", offset=offset)
    unknown = sorted(str(key) for key in envelope if key not in ENVELOPE_KEYS)
    if unknown:
        raise DecodeError(
            f"{event_type}: the envelope has no key {unknown[0]!r} (an envelope has "
            f"{', '.join(sorted(ENVELOPE_KEYS))})",
            event_type=event_type,
            path=unknown[0],
            offset=offset,
        )
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
