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

from collections.abc import Callable, Mapping
from typing import Any

from chanlog import codegen
from chanlog.events.base import Event

__all__ = ["Mismatch", "trusted_decoder"]


class Mismatch(Exception):
    """The payload is not exactly what the log writes; use the strict decoder."""


_decoders: dict[type, Callable[[Mapping[str, Any]], Event] | None] = {}


def _generate(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event] | None:
    plan = codegen.plan_of(cls)
    kinds = plan.primitive_types()
    if kinds is None or not all(field.has_member_slot for field in plan.fields):
        return None
    names: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "Mismatch": Mismatch}
    fetch: list[str] = []
    optional: list[str] = []
    checks: list[str] = []
    convert: list[str] = []
    store: list[str] = []
    required = 0
    for field, kind in zip(plan.fields, kinds, strict=True):
        name = field.name
        index = field.index
        var = f"v{index}"
        names[f"_set{index}"] = field.slot.__set__
        store.append(f"    _set{index}(o, {var})")
        if field.amount:
            # At most 78 digits (2**256 has 78): int() of a longer string could even raise
            # ValueError (Python's int-string length limit) instead of a Mismatch.
            check = (
                f"type({var}) is str and {var}.isascii() and {var}.isdigit()"
                f' and (len({var}) == 1 or ({var}[0] != "0" and len({var}) <= 78))'
            )
            conversion = f"{var} = int({var})"
        elif kind.primitive is tuple:
            check = f"type({var}) is list and all(type(item) is str for item in {var})"
            conversion = f"{var} = tuple({var})"
        else:
            check = f"type({var}) is {kind.primitive.__name__}"  # type: ignore[union-attr]
            conversion = ""
        if kind.nullable and field.omitted_when_none:
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
    decode: Callable[[Mapping[str, Any]], Event] = codegen.compile_function(
        "\n".join(lines) + "\n",
        "decode",
        names,
        purpose="decode",
        qualname=f"{cls.__module__}.{cls.__qualname__}",
    )
    return decode


def trusted_decoder(cls: type[Event]) -> Callable[[Mapping[str, Any]], Event] | None:
    """The fast decoder for payloads of ``cls`` read from the log (it raises
    :class:`Mismatch` when the payload is not exactly what the log writes), or ``None`` for a
    plugin event type whose field types go beyond the primitives (always decoded strictly)."""
    if cls in _decoders:
        return _decoders[cls]
    decoder = _generate(cls)
    _decoders[cls] = decoder
    return decoder
