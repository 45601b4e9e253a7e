"""The base class every event type derives from, built-in or contributed by a plugin."""

from __future__ import annotations

import time
from functools import cached_property
from typing import ClassVar

import attrs

from chanlog import fields

__all__ = ["Event", "now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the default ``timestamp_ms`` of a new event."""
    return time.time_ns() // 1_000_000


@attrs.define(frozen=True, slots=True, kw_only=True)
class Event:
    """An immutable, validated fact. Subclasses are attrs classes declared with
    ``@attrs.define(frozen=True, slots=True, kw_only=True)`` and two class variables:

    - ``event_type``: the kebab-case wire name (``"state-signed"``), part of the event id;
    - ``stream_fields``: the fields naming the entities the event belongs to, primary first.

    The event id is a content address: keccak256 over the wire name and the canonical JSON
    of every field (see :mod:`chanlog.codec`). It is computed once, on first use.
    """

    event_type: ClassVar[str] = ""
    stream_fields: ClassVar[tuple[str, ...]] = ()

    event_version: int = attrs.field(default=1, validator=fields.positive_int)
    timestamp_ms: int = attrs.field(factory=now_ms, validator=fields.uint)

    @property
    def streams(self) -> tuple[str, ...]:
        """The entity ids this event belongs to, lower-cased, primary first.

        Ids are hex, and hex case carries no meaning for identity, so streams are keyed
        case-insensitively while the payload keeps the case it was given.
        """
        fields = self.stream_fields
        if len(fields) == 1:  # the common case: one entity per event
            value = getattr(self, fields[0])
            return () if value is None else (value.lower(),)
        return tuple(
            value.lower() for value in (getattr(self, name) for name in fields) if value is not None
        )

    @cached_property
    def event_id(self) -> str:
        """``0x`` + hex keccak256 of ``b"ev1|" + event_type + b"|" + canonical JSON``."""
        from chanlog.codec import event_id_of

        return event_id_of(self)

    def canonical_json(self) -> bytes:
        """The canonical JSON bytes of this event's payload (sorted keys, no whitespace)."""
        from chanlog.codec import canonical_json

        return canonical_json(self)
