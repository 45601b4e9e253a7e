"""Field validators and markers for event classes.

The built-in events and third-party event types use the same validators, so a plugin's event
is checked as strictly as a built-in one. Every validator raises
:class:`~chanlog.errors.InvalidEvent` naming the event type, the field and the rule.

Usage in an attrs event class::

    channel_id: str = attrs.field(validator=fields.bytes32)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)
    tx_hash: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from chanlog.errors import InvalidEvent

__all__ = [
    "AMOUNT",
    "MAX_AMOUNT",
    "MAX_UINT64",
    "address",
    "amount",
    "bool_",
    "bytes32",
    "one_of",
    "optional",
    "optional_tuple",
    "participants",
    "positive_int",
    "signature",
    "text",
    "to_tuple",
    "uint",
]

MAX_AMOUNT = 2**256
"""Amounts are uint256: ``0 <= amount < MAX_AMOUNT``."""

MAX_UINT64 = 2**64
"""Counters, turns, block numbers and timestamps must fit JSON's exact integer range
as orjson writes it (uint64)."""

AMOUNT: dict[str, Any] = {"chanlog_amount": True}
"""Field metadata marking a uint256 amount: JSON carries it as a decimal string."""

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _short(value: Any) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 80 else text_[:77] + "..."


def _fail(instance: Any, attribute: attrs.Attribute[Any], rule: str, value: Any) -> InvalidEvent:
    event_type = getattr(type(instance), "event_type", type(instance).__name__)
    return InvalidEvent(
        f"{event_type}.{attribute.name}: must be {rule}, got {_short(value)}",
        event_type=event_type,
        field=attribute.name,
        rule=rule,
    )


class _Hex:
    """Validator: ``0x`` + a fixed number of hex digits."""

    __slots__ = ("_fullmatch", "_pattern", "rule")

    def __init__(self, digits: int, what: str) -> None:
        self._pattern = re.compile(rf"0x[0-9a-fA-F]{{{digits}}}")
        self._fullmatch = self._pattern.fullmatch
        self.rule = f"{what} ('0x' + {digits} hex digits)"

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not str or self._fullmatch(value) is None:
            raise _fail(instance, attribute, self.rule, value)

    def optional(self) -> Validator:
        """``None`` or a valid value, checked in one frame (a hot path: every event)."""
        fullmatch = self._fullmatch
        rule = self.rule

        def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            if value is not None and (type(value) is not str or fullmatch(value) is None):
                raise _fail(instance, attribute, rule, value)

        return check


bytes32 = _Hex(64, "a bytes32 hex string")
"""Validator: ``0x`` + 64 hex digits (ids, hashes). Case is kept as given."""

address = _Hex(40, "an address")
"""Validator: ``0x`` + 40 hex digits. Mixed case (EIP-55) is allowed."""

signature = _Hex(130, "a signature")
"""Validator: ``0x`` + 130 hex digits (r, s, v)."""


def _int_in(low: int, high: int, rule: str) -> Validator:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not int or not low <= value < high:
            raise _fail(instance, attribute, rule, value)

    return check


amount = _int_in(0, MAX_AMOUNT, "an int in [0, 2**256)")
"""Validator: a uint256 amount (a Python int, never a bool)."""

uint = _int_in(0, MAX_UINT64, "an int in [0, 2**64)")
"""Validator: a non-negative integer that fits 64 bits (turns, blocks, counts, times)."""

positive_int = _int_in(1, MAX_UINT64, "an int in [1, 2**64)")
"""Validator: an integer >= 1 that fits 64 bits."""


def bool_(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Validator: exactly ``True`` or ``False``."""
    if type(value) is not bool:
        raise _fail(instance, attribute, "a bool", value)


def text(*, min_length: int = 0, max_length: int = 4096) -> Validator:
    """Validator factory: a ``str`` whose length lies in ``[min_length, max_length]``."""
    rule = f"a string of {min_length}..{max_length} characters"

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not str or not min_length <= len(value) <= max_length:
            raise _fail(instance, attribute, rule, value)

    return check


def one_of(*allowed: str) -> Validator:
    """Validator factory: one of the given strings."""
    choices = frozenset(allowed)
    rule = "one of " + ", ".join(allowed)

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not str or value not in choices:
            raise _fail(instance, attribute, rule, value)

    return check


def optional(validator: Validator) -> Validator:
    """Validator factory: ``None`` or whatever ``validator`` accepts."""
    if isinstance(validator, _Hex):
        return validator.optional()

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def participants(*, minimum: int = 2, maximum: int = 255) -> Validator:
    """Validator factory: a tuple of distinct addresses, ``minimum..maximum`` long.

    Distinctness is case-insensitive, since two spellings of one address are one participant.
    """
    rule = f"a list of {minimum}..{maximum} distinct addresses"

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not tuple or not minimum <= len(value) <= maximum:
            raise _fail(instance, attribute, rule, value)
        for position, item in enumerate(value):
            if type(item) is not str or address._pattern.fullmatch(item) is None:
                event_type = getattr(type(instance), "event_type", type(instance).__name__)
                raise InvalidEvent(
                    f"{event_type}.{attribute.name}[{position}]: must be {address.rule}, "
                    f"got {_short(item)}",
                    event_type=event_type,
                    field=f"{attribute.name}[{position}]",
                    rule=address.rule,
                )
        if len({item.lower() for item in value}) != len(value):
            raise _fail(instance, attribute, rule, value)

    return check


def to_tuple(value: Any) -> Any:
    """Converter: turn a list into a tuple so the event stays immutable.

    Anything else is passed through unchanged for the validator to judge (a string is not
    silently split into characters).
    """
    if type(value) is list:
        return tuple(value)
    return value


def optional_tuple(value: Any) -> Any:
    """Converter: like :func:`to_tuple`, keeping ``None``."""
    return None if value is None else to_tuple(value)
