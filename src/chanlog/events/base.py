"""The base class every event type derives from, built-in or contributed by a plugin."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import attrs

from chanlog import fields
from chanlog.events import _fastinit
from chanlog.payloads import canonical_json, encode_event_raw

__all__ = ["Event", "now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the default ``timestamp_ms`` of a new event."""
    return time.time_ns() // 1_000_000


class _IdSlot:
    """The slot that caches an event's id, outside the attrs fields (so it is not part of the
    payload, equality, hash or repr)."""

    __slots__ = ("_event_id",)

    _event_id: str


@attrs.define(frozen=True, slots=True, kw_only=True)
class Event(_IdSlot):
    """An immutable, validated fact. Subclasses are attrs classes declared with
    ``@attrs.define(frozen=True, slots=True, kw_only=True)`` and these class variables:

    - ``event_type``: the kebab-case wire name (``"state-signed"``), part of the event id;
    - ``stream_fields``: the fields naming the entities the event belongs to, primary first;
    - ``group``: the event's family on the bus, the second token of its subject
      (``objective``, ``channel``, ``chain``, ``messaging``, ``system`` for the built-ins;
      ``plugin`` unless a plugin's type declares its own; see :mod:`chanlog.bus.subjects`).

    The event id is a content address: keccak256 over the wire name and the canonical JSON
    of every field (see :mod:`chanlog.codec`). It is computed once, on first use.
    """

    event_type: ClassVar[str] = ""
    stream_fields: ClassVar[tuple[str, ...]] = ()
    group: ClassVar[str] = "plugin"

    event_version: int = attrs.field(default=1, validator=fields.positive_int)
    timestamp_ms: int = attrs.field(factory=now_ms, validator=fields.uint)

    @classmethod
    def __attrs_init_subclass__(cls) -> None:
        """Called by attrs once a subclass is built: give it a specialised ``__init__``
        that checks every field in one frame (see :mod:`chanlog.events._fastinit`)."""
        _fastinit.install(cls)

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

    @property
    def event_id(self) -> str:
        """``0x`` + hex keccak256 of ``b"ev1|" + event_type + b"|" + canonical JSON``."""
        # A property over a plain slot rather than functools.cached_property: attrs implements
        # a cached_property on a slotted class with a class-level __getattr__, and any
        # __getattr__ keeps CPython from specialising attribute reads, which made reading
        # every field of every event about three times slower.
        try:
            return self._event_id
        except AttributeError:
            return encode_event_raw(self)[1]  # which fills the cache

    @event_id.setter
    def event_id(self, value: str) -> None:
        # Reached only through object.__setattr__ (the frozen __setattr__ refuses
        # ``event.event_id = ...``): a reader that already knows the id fills the cache.
        _set_event_id(self, value)

    def canonical_json(self) -> bytes:
        """The canonical JSON bytes of this event's payload (sorted keys, no whitespace)."""
        return canonical_json(self)


_set_event_id: Any = vars(_IdSlot)["_event_id"].__set__
# The setter as the slot's own C-level __set__: filling the cache costs no Python frame.
Event.event_id = property(  # type: ignore[method-assign,assignment]
    vars(Event)["event_id"].fget, _set_event_id, doc=vars(Event)["event_id"].__doc__
)
