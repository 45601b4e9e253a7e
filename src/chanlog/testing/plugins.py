"""A plugin for tests: a projection that refuses :func:`~chanlog.testing.events.refused_event`,
and an event type whose entity is named by free-form text (:class:`EntityNoted`).

Storage tests run the store without the built-in projections (``projections=[]``), so the
events they append need no history. To prove that a refused event leaves no trace, they need
a refusal that does not depend on the built-ins: :func:`refusing_host` gives a plugin host
whose only projection is :class:`RefusingProjection`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from chanlog import fields
from chanlog.errors import InvalidTransition
from chanlog.events import MessageDropped
from chanlog.events.base import Event
from chanlog.plugins.hookspecs import hookimpl
from chanlog.plugins.host import PluginHost
from chanlog.testing.events import REFUSED_REASON

__all__ = [
    "REFUSING_PROJECTION",
    "DocumentNoted",
    "EntityNoted",
    "RefusingProjection",
    "refusing_host",
]

REFUSING_PROJECTION = "conformance-refuser"
"""The registered name of :class:`RefusingProjection`."""


class _CountingStage:
    def __init__(self, projection: RefusingProjection) -> None:
        self._projection = projection
        self._pending = 0

    def apply(self, event: Event, offset: int) -> None:
        if isinstance(event, MessageDropped) and event.reason == REFUSED_REASON:
            raise InvalidTransition(
                f"offset {offset}: the conformance suite refuses this event",
                kind=REFUSING_PROJECTION,
                entity_id=event.streams[0] if event.streams else "",
                event_type=event.event_type,
                rule="refused-by-test",
            )
        self._pending += 1

    def commit(self) -> None:
        self._projection.folded += self._pending
        self._pending = 0


class RefusingProjection:
    """Counts the events it folds (``folded``) and refuses the suite's refused event."""

    name = REFUSING_PROJECTION
    schema_version = 1

    def __init__(self) -> None:
        self.folded = 0

    def stage(self) -> _CountingStage:
        """Begin staging one write transaction."""
        return _CountingStage(self)

    def get(self, entity_id: str) -> Any | None:
        """This projection keeps no entities."""
        return None

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """This projection keeps no entities."""
        return ()

    def fold(self, state: Any | None, event: Event, entity_id: str, offset: int) -> Any:
        """Counting is the whole fold."""
        return (state or 0) + 1

    def dump(self) -> Any:
        """The count, for snapshots."""
        return {"folded": self.folded}

    def load(self, data: Any) -> None:
        """Restore the count from :meth:`dump`."""
        self.folded = int(data["folded"])

    def __len__(self) -> int:
        return 0


@attrs.define(frozen=True, slots=True, kw_only=True)
class EntityNoted(Event):
    """A note on an entity whose id is free-form text, as a plugin's type may declare it:
    the store, not the field's validator, holds its entity id to the rule every backend
    keeps (no NUL character, ADR 0070)."""

    event_type: ClassVar[str] = "conformance-entity-noted"
    stream_fields: ClassVar[tuple[str, ...]] = ("entity",)

    entity: str = attrs.field(validator=fields.text(min_length=1, max_length=256))
    note: str = attrs.field(default="", validator=fields.text())


@attrs.define(frozen=True, slots=True, kw_only=True)
class DocumentNoted(Event):
    """A document kept on an entity, of any length, as a plugin's type may declare a field
    without a bound: the store, not the field's validator, holds its size to the limit every
    backend keeps (:data:`chanlog.payloads.MAX_PAYLOAD_BYTES`, ADR 0075)."""

    event_type: ClassVar[str] = "conformance-document-noted"
    stream_fields: ClassVar[tuple[str, ...]] = ("entity",)

    entity: str = attrs.field(validator=fields.text(min_length=1, max_length=256))
    body: str = attrs.field(default="", validator=attrs.validators.instance_of(str))


class _RefusingPlugin:
    @hookimpl
    def chanlog_register_event_types(self, register: Callable[[type[Event]], None]) -> None:
        register(EntityNoted)
        register(DocumentNoted)

    @hookimpl
    def chanlog_register_projections(
        self, register: Callable[[str, Callable[[], Any]], None]
    ) -> None:
        register(REFUSING_PROJECTION, RefusingProjection)


def refusing_host() -> PluginHost:
    """A plugin host with the built-in plugins minus entry points, plus the refusing
    projection and the event types :class:`EntityNoted` and :class:`DocumentNoted` (use
    ``EventStore(..., plugins=host, projections=[REFUSING_PROJECTION])``)."""
    host = PluginHost(load_entry_points=False)
    host.register(_RefusingPlugin(), name="chanlog-testing")
    return host
