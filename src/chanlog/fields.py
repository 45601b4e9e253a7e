"""Field validators and markers for event classes.

The built-in events and third-party event types use the same validators, so a plugin's event
is checked as strictly as a built-in one. Every validator raises
:class:`~chanlog.errors.InvalidEvent` naming the event type, the field and the rule.

Usage in an attrs event class::

    channel_id: str = attrs.field(validator=fields.bytes32)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)
    tx_hash: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))

Each validator is an ordinary attrs validator (``validator(instance, attribute, value)``).
It can also describe its check as a Python expression, which :class:`~chanlog.Event` uses to
generate one ``__init__`` per event class that checks every field in a single frame (see
``chanlog.events._fastinit``). The expression only decides whether the fast path may accept
a value; a value it does not accept is judged by calling the validator itself, so the
message, the rule and the first failing field are exactly those of the validator.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

import attrs

from chanlog.errors import InvalidEvent

__all__ = [
    "AMOUNT",
    "ENTITY_ID_RULE",
    "MAX_AMOUNT",
    "MAX_UINT64",
    "address",
    "amount",
    "bool_",
    "bytes32",
    "entity_id_check",
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

_unhexlify = binascii.unhexlify


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


class _Inline:
    """How a validator's check reads inside a generated ``__init__``.

    ``condition`` is a Python expression over the variable holding the value, true when the
    fast path may accept it. ``statement`` (for hex fields: the digit check, which needs a
    call that raises) runs once every condition holds and raises ``ValueError`` when the value
    must be judged by the validator after all; ``_cl_unhexlify`` is
    :func:`binascii.unhexlify`. ``names`` are any other objects the code refers to.
    """

    __slots__ = ("condition", "names", "statement")

    def __init__(
        self,
        condition: str,
        statement: str | None = None,
        names: dict[str, Any] | None = None,
    ) -> None:
        self.condition = condition
        self.statement = statement
        self.names = names or {}


class InlineCheck:
    """A validator of this module: callable the attrs way, and able to inline itself."""

    __slots__ = ("rule",)

    rule: str

    def accepts(self, value: Any) -> bool:
        """True when ``value`` passes this check (the validator would not raise)."""
        raise NotImplementedError

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not self.accepts(value):
            raise _fail(instance, attribute, self.rule, value)

    def inline(self, var: str, tag: str) -> _Inline | None:
        """The check as code over the variable ``var``, or ``None`` when it has to be called.
        ``tag`` makes the names it needs unique within one generated function."""
        return None

    def __repr__(self) -> str:
        return f"<chanlog.fields validator: {self.rule}>"


class _Hex(InlineCheck):
    """Validator: ``0x`` + a fixed number of hex digits.

    The digits are checked by :func:`binascii.unhexlify`, which accepts exactly the pairs of
    ``[0-9a-fA-F]`` and refuses whitespace, signs, underscores and non-ASCII characters (unlike
    ``bytes.fromhex`` and ``int(..., 16)``); the length check before it makes the digit count
    exact. That is the regular expression ``0x[0-9a-fA-F]{digits}`` at a third of the cost.
    """

    __slots__ = ("_length",)

    def __init__(self, digits: int, what: str) -> None:
        if digits <= 0 or digits % 2:
            raise ValueError("hex fields have a positive, even number of digits")
        self._length = digits + 2
        self.rule = f"{what} ('0x' + {digits} hex digits)"

    def accepts(self, value: Any) -> bool:
        if type(value) is not str or len(value) != self._length or value[:2] != "0x":
            return False
        try:
            _unhexlify(value[2:])
        except ValueError:
            return False
        return True

    def inline(self, var: str, tag: str) -> _Inline | None:
        # '"0x" in v' costs a fifth of 'v[:2] == "0x"' (no slice to allocate). It is exact
        # together with the digit check: once unhexlify has accepted v[2:] (no "x" there),
        # the "0x" can only be v's first two characters.
        return _Inline(
            f'(type({var}) is str and len({var}) == {self._length} and "0x" in {var})',
            f"_cl_unhexlify({var}[2:])",
        )


bytes32 = _Hex(64, "a bytes32 hex string")
"""Validator: ``0x`` + 64 hex digits (ids, hashes). Case is kept as given."""

address = _Hex(40, "an address")
"""Validator: ``0x`` + 40 hex digits. Mixed case (EIP-55) is allowed."""

signature = _Hex(130, "a signature")
"""Validator: ``0x`` + 130 hex digits (r, s, v)."""


class _IntIn(InlineCheck):
    """Validator: an ``int`` (never a ``bool``) in ``[low, high)``."""

    __slots__ = ("_high", "_low")

    def __init__(self, low: int, high: int, rule: str) -> None:
        self._low = low
        self._high = high
        self.rule = rule

    def accepts(self, value: Any) -> bool:
        return type(value) is int and self._low <= value < self._high

    def inline(self, var: str, tag: str) -> _Inline | None:
        return _Inline(f"(type({var}) is int and {self._low} <= {var} < {self._high})")


amount = _IntIn(0, MAX_AMOUNT, "an int in [0, 2**256)")
"""Validator: a uint256 amount (a Python int, never a bool)."""

uint = _IntIn(0, MAX_UINT64, "an int in [0, 2**64)")
"""Validator: a non-negative integer that fits 64 bits (turns, blocks, counts, times)."""

positive_int = _IntIn(1, MAX_UINT64, "an int in [1, 2**64)")
"""Validator: an integer >= 1 that fits 64 bits."""


class _Bool(InlineCheck):
    """Validator: exactly ``True`` or ``False``."""

    __slots__ = ()

    def __init__(self) -> None:
        self.rule = "a bool"

    def accepts(self, value: Any) -> bool:
        return type(value) is bool

    def inline(self, var: str, tag: str) -> _Inline | None:
        return _Inline(f"(type({var}) is bool)")


bool_ = _Bool()
"""Validator: exactly ``True`` or ``False``."""


def _encodable(value: str) -> bool:
    """True when ``value`` is valid Unicode text: it encodes to UTF-8 (no lone surrogates,
    which no JSON encoder can write)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_TEXT_ENCODING_RULE = "valid Unicode text (no lone surrogates)"


class _Text(InlineCheck):
    """Validator: a ``str`` whose length lies in ``[min_length, max_length]`` and that is
    valid Unicode (encodes to UTF-8: a lone surrogate could be stored by no serializer).

    The encoding check costs one :meth:`str.isascii` for ASCII text, the common case; only
    other text is encoded.
    """

    __slots__ = ("_max", "_min")

    def __init__(self, min_length: int, max_length: int) -> None:
        self._min = min_length
        self._max = max_length
        self.rule = f"a string of {min_length}..{max_length} characters"

    def accepts(self, value: Any) -> bool:
        return (
            type(value) is str
            and self._min <= len(value) <= self._max
            and (value.isascii() or _encodable(value))
        )

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not str or not self._min <= len(value) <= self._max:
            raise _fail(instance, attribute, self.rule, value)
        if not (value.isascii() or _encodable(value)):
            raise _fail(instance, attribute, _TEXT_ENCODING_RULE, value)

    def inline(self, var: str, tag: str) -> _Inline | None:
        name = f"_cl_encodable_{tag}"
        return _Inline(
            f"(type({var}) is str and {self._min} <= len({var}) <= {self._max}"
            f" and ({var}.isascii() or {name}({var})))",
            None,
            {name: _encodable},
        )


def text(*, min_length: int = 0, max_length: int = 4096) -> Validator:
    """Validator factory: a ``str`` whose length lies in ``[min_length, max_length]``."""
    return _Text(min_length, max_length)


class _OneOf(InlineCheck):
    """Validator: one of a fixed set of strings."""

    __slots__ = ("_choices",)

    def __init__(self, allowed: tuple[str, ...]) -> None:
        for choice in allowed:
            # A choice must be something an event can carry: a string every serializer can
            # write. Then a value in the set is such a string too (no lone surrogates).
            if type(choice) is not str or not _encodable(choice):
                raise ValueError(f"one_of() choices must be valid Unicode strings: {choice!r}")
        self._choices = frozenset(allowed)
        self.rule = "one of " + ", ".join(allowed)

    def accepts(self, value: Any) -> bool:
        return type(value) is str and value in self._choices

    def inline(self, var: str, tag: str) -> _Inline | None:
        name = f"_cl_choices_{tag}"
        return _Inline(f"(type({var}) is str and {var} in {name})", None, {name: self._choices})


def one_of(*allowed: str) -> Validator:
    """Validator factory: one of the given strings."""
    return _OneOf(allowed)


class _Optional(InlineCheck):
    """Validator: ``None`` or whatever the wrapped validator accepts."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Validator) -> None:
        self._inner = inner
        self.rule = getattr(inner, "rule", "optional")

    def accepts(self, value: Any) -> bool:
        inner = self._inner
        if value is None:
            return True
        if isinstance(inner, InlineCheck):
            return inner.accepts(value)
        raise TypeError("accepts() needs a chanlog.fields validator inside optional()")

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            self._inner(instance, attribute, value)

    def inline(self, var: str, tag: str) -> _Inline | None:
        inner = self._inner.inline(var, tag) if isinstance(self._inner, InlineCheck) else None
        if inner is None:
            return None
        statement = None
        if inner.statement is not None:
            statement = f"if {var} is not None: {inner.statement}"
        return _Inline(f"({var} is None or {inner.condition})", statement, inner.names)


def optional(validator: Validator) -> Validator:
    """Validator factory: ``None`` or whatever ``validator`` accepts."""
    return _Optional(validator)


class _Participants(InlineCheck):
    """Validator: a tuple of distinct addresses (case-insensitively), of bounded length."""

    __slots__ = ("_max", "_min")

    def __init__(self, minimum: int, maximum: int) -> None:
        self._min = minimum
        self._max = maximum
        self.rule = f"a list of {minimum}..{maximum} distinct addresses"

    def accepts(self, value: Any) -> bool:
        if type(value) is not tuple or not self._min <= len(value) <= self._max:
            return False
        ok = address.accepts
        if not all(ok(item) for item in value):
            return False
        return len({item.lower() for item in value}) == len(value)

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if self.accepts(value):
            return
        # Refused: name the first bad address when the tuple itself has the right shape;
        # otherwise (wrong type or length, or a duplicate) the whole field is at fault.
        if type(value) is tuple and self._min <= len(value) <= self._max:
            for position, item in enumerate(value):
                if address.accepts(item):
                    continue
                event_type = getattr(type(instance), "event_type", type(instance).__name__)
                raise InvalidEvent(
                    f"{event_type}.{attribute.name}[{position}]: must be {address.rule}, "
                    f"got {_short(item)}",
                    event_type=event_type,
                    field=f"{attribute.name}[{position}]",
                    rule=address.rule,
                )
        raise _fail(instance, attribute, self.rule, value)


def participants(*, minimum: int = 2, maximum: int = 255) -> Validator:
    """Validator factory: a tuple of distinct addresses, ``minimum..maximum`` long.

    Distinctness is case-insensitive, since two spellings of one address are one participant.
    """
    return _Participants(minimum, maximum)


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


ENTITY_ID_RULE = "an entity id without a NUL character (U+0000)"
"""The rule every entity id (a value of a ``stream_fields`` field) keeps on every backend:
PostgreSQL's text cannot hold a NUL, so no store accepts one (ADR 0070)."""


def _hex_only(validator: Any) -> bool:
    """True when ``validator`` accepts only hex text, or ``None`` (no NUL can get past it)."""
    if isinstance(validator, _Optional):
        validator = validator._inner
    return isinstance(validator, _Hex)


_ENTITY_ID_CHECKS: dict[type, Callable[[Any], None] | None] = {}


def entity_id_check(cls: type) -> Callable[[Any], None] | None:
    """The check the store makes of the entity ids of an event of ``cls`` before writing it:
    a function raising :class:`~chanlog.errors.InvalidEvent` (naming the event type, the
    field and :data:`ENTITY_ID_RULE`) for an entity id holding a NUL; ``None`` when the
    validators of ``cls``'s stream fields already refuse one (hex ids, as every built-in
    type's), so such events cost nothing more. Built once per class (the append path and
    an import both ask per event class)."""
    if cls not in _ENTITY_ID_CHECKS:
        _ENTITY_ID_CHECKS[cls] = _entity_id_check(cls)
    return _ENTITY_ID_CHECKS[cls]


def _entity_id_check(cls: type) -> Callable[[Any], None] | None:
    by_name = attrs.fields_dict(cls)
    names = tuple(
        name
        for name in getattr(cls, "stream_fields", ())
        if name not in by_name or not _hex_only(by_name[name].validator)
    )
    if not names:
        return None

    def check(event: Any) -> None:
        for name in names:
            value = getattr(event, name, None)
            if type(value) is str and "\x00" in value:
                raise _fail(event, by_name[name], ENTITY_ID_RULE, value)

    return check
