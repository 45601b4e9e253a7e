"""Fast decoding of payloads the log itself wrote.

Every record in a log was validated when it was appended, and ``verify()`` proves the bytes
were not changed since, so reading back need not re-run every format check (hex patterns,
ranges). For each event class this module generates, once, a function that checks only the
shape (key set and primitive types) and sets the slots directly; anything unexpected falls
back to the strict decoder in :mod:`chanlog.codec`, which raises the precise
:class:`~chanlog.errors.DecodeError`. That makes a read about four times cheaper.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from chanlog.events.base import Event

__all__ = ["Mismatch", "trusted_decoder"]


class Mismatch(Exception):
    """The payload is not exactly what the log writes; use the strict decoder."""


_decoders: dict[type, Callable[[Mapping[str, Any]], Event] | None] = {}


def _base_type(annotation: Any) -> tuple[type, bool]:
    """``(primitive type, optional?)`` for ``str``, ``int``, ``bool``, ``tuple[str, ...]``
    and their ``| None`` forms."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(members) != len(typing.get_args(annotation))
        if len(members) != 1:
            raise TypeError(f"unsupported field type {annotation!r}")
        annotation = members[0]
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return tuple, optional
    if annotation in (str, int, bool):
        return annotation, optional
    raise TypeError(f"unsupported field type {annotation!r}")


def _is_canonical_decimal(value: Any) -> bool:
    return (
        type(value) is str
        and value.isascii()
        and value.isdigit()
        and (len(value) == 1 or value[0] != "0")
    )


def _generate(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event]:
    hints = typing.get_type_hints(cls)
    lines = ["def decode(payload):", "    o = new(cls)", "    found = 0"]
    for field in attrs.fields(cls):
        name = field.name
        primitive, optional = _base_type(hints[name])
        amount = bool(field.metadata.get("chanlog_amount"))
        lines.append(f"    v = payload.get({name!r}, MISSING)")
        if optional and field.default is None:
            lines.append("    if v is MISSING:")
            lines.append("        v = None")
            lines.append("    else:")
            lines.append("        found += 1")
            indent = "        "
            lines.append(f"{indent}if v is None: raise Mismatch")
        else:
            lines.append("    if v is MISSING: raise Mismatch")
            lines.append("    found += 1")
            indent = "    "
        if amount:
            lines.append(f"{indent}if not decimal(v): raise Mismatch")
            lines.append(f"{indent}v = int(v)")
        elif primitive is tuple:
            lines.append(f"{indent}if type(v) is not list: raise Mismatch")
            lines.append(f"{indent}for item in v:")
            lines.append(f"{indent}    if type(item) is not str: raise Mismatch")
            lines.append(f"{indent}v = tuple(v)")
        else:
            lines.append(f"{indent}if type(v) is not {primitive.__name__}: raise Mismatch")
        lines.append(f"    setattr(o, {name!r}, v)")
    lines.append("    if found != len(payload): raise Mismatch")
    lines.append("    return o")
    namespace: dict[str, Any] = {
        "new": object.__new__,
        "cls": cls,
        "setattr": object.__setattr__,
        "MISSING": _MISSING,
        "Mismatch": Mismatch,
        "decimal": _is_canonical_decimal,
    }
    # The source is generated from the attrs fields above, never from input.
    exec("\n".join(lines), namespace)
    decode: Callable[[Mapping[str, Any]], Event] = namespace["decode"]
    return decode


_MISSING = object()


def trusted_decoder(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event] | None:
    """The fast decoder for payloads of ``cls`` read from the log (it raises
    :class:`Mismatch` when the payload is not exactly what the log writes), or ``None`` for a
    plugin event type whose field types go beyond the primitives (always decoded strictly)."""
    if cls in _decoders:
        return _decoders[cls]
    try:
        decoder: Callable[[Mapping[str, Any]], Event] | None = _generate(cls)
    except TypeError:
        decoder = None
    _decoders[cls] = decoder
    return decoder
