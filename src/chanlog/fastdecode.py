"""Fast decoding of payloads the log itself wrote.

Every record in a log was validated when it was appended, and ``verify()`` proves the bytes
were not changed since, so reading back need not re-run every format check (hex patterns,
ranges). For each event class this module generates, once, a function that checks only the
shape (key set and primitive types) and sets the slots directly through their member
descriptors (the frozen ``__setattr__`` is not involved); anything unexpected falls back to the
strict decoder in :mod:`chanlog.codec`, which raises the precise
:class:`~chanlog.errors.DecodeError`. That makes a read about six times cheaper.

The generated function reads the required keys first (a missing one is a ``KeyError`` turned
into :class:`Mismatch`), checks their types in one expression, reads each optional key with
``get`` (absent and ``null`` both give ``None``), and counts the keys it accepted: the payload
must have exactly that many, which refuses unknown keys and an explicit ``null`` alike.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from chanlog.events._fastinit import slot_descriptor
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


def _generate(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event]:
    hints = typing.get_type_hints(cls)
    names: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "Mismatch": Mismatch}
    fetch: list[str] = []
    optional: list[str] = []
    checks: list[str] = []
    convert: list[str] = []
    store: list[str] = []
    required = 0
    for index, field in enumerate(attrs.fields(cls)):
        name = field.name
        var = f"v{index}"
        primitive, is_optional = _base_type(hints[name])
        descriptor = slot_descriptor(cls, name)
        if type(descriptor) is not types.MemberDescriptorType:
            raise TypeError(f"field {name!r} is not a slot")
        names[f"_set{index}"] = descriptor.__set__
        store.append(f"    _set{index}(o, {var})")
        if field.metadata.get("chanlog_amount"):
            # At most 78 digits (2**256 has 78): int() of a longer string could even raise
            # ValueError (Python's int-string length limit) instead of a Mismatch.
            check = (
                f"type({var}) is str and {var}.isascii() and {var}.isdigit()"
                f' and (len({var}) == 1 or ({var}[0] != "0" and len({var}) <= 78))'
            )
            conversion = f"{var} = int({var})"
        elif primitive is tuple:
            check = f"type({var}) is list and all(type(item) is str for item in {var})"
            conversion = f"{var} = tuple({var})"
        else:
            check = f"type({var}) is {primitive.__name__}"
            conversion = ""
        if is_optional and field.default is None:
            # Absent means None; a present null is not what the log writes (the length
            # check below catches it, since it is not counted).
            optional.append(f"    {var} = payload.get({name!r})")
            optional.append(f"    if {var} is not None:")
            optional.append(f"        if not ({check}): raise Mismatch")
            if conversion:
                optional.append(f"        {conversion}")
            optional.append("        count += 1")
        else:
            required += 1
            fetch.append(f"        {var} = payload[{name!r}]")
            checks.append(f"({check})")
            if conversion:
                convert.append(f"    {conversion}")
    lines = ["def decode(payload):"]
    if fetch:
        lines += ["    try:", *fetch, "    except KeyError:", "        raise Mismatch from None"]
        lines.append(f"    if not ({' and '.join(checks)}): raise Mismatch")
    lines += convert
    lines.append(f"    count = {required}")
    lines += optional
    lines += ["    if len(payload) != count: raise Mismatch", "    o = _new(_cls)", *store]
    lines.append("    return o")
    # The source is generated from the attrs fields above, never from input.
    exec("\n".join(lines) + "\n", names)
    decode: Callable[[Mapping[str, Any]], Event] = names["decode"]
    decode.__chanlog_source__ = "\n".join(lines)  # type: ignore[attr-defined]
    return decode


def trusted_decoder(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event] | None:
    """The fast decoder for payloads of ``cls`` read from the log (it raises
    :class:`Mismatch` when the payload is not exactly what the log writes), or ``None`` for a
    plugin event type whose field types go beyond the primitives (always decoded strictly)."""
    if cls in _decoders:
        return _decoders[cls]
    try:
        decoder: Callable[[Mapping[str, Any]], Event] | None = _generate(cls)
    except (TypeError, NameError):  # NameError: annotations get_type_hints cannot resolve
        decoder = None
    _decoders[cls] = decoder
    return decoder
