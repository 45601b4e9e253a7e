"""What the bus needs of a store: the narrow, public part of
:class:`~chanlog.EventStore` that runners, the consumer admin and the bus façade use (so
they never import the store)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from chanlog.backends.base import Backend
from chanlog.events.base import Event
from chanlog.plugins.host import PluginHost
from chanlog.records import PositionMove, RecordedEvent, StoredRecord

__all__ = ["BusStore"]


class BusStore(Protocol):
    """A store as the bus sees it."""

    @property
    def backend(self) -> Backend:
        """Where the log, and the consumers' positions, live."""
        ...

    @property
    def plugins(self) -> PluginHost:
        """Where event types, brokers and handlers are registered."""
        ...

    def __len__(self) -> int: ...

    def decode(self, stored: StoredRecord) -> RecordedEvent:
        """A stored record, decoded."""
        ...

    def read_range(self, start: int, end: int) -> Iterator[RecordedEvent]:
        """Decoded records with ``start <= offset < end``."""
        ...

    def append_batch(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        expected_versions: Mapping[str, int] | None = None,
        consumer_move: PositionMove | None = None,
    ) -> list[int]:
        """Append atomically, with a consumer's move."""
        ...
