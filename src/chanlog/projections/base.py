"""The projection contract the store folds every committed event through.

A projection folds the events of one entity kind into immutable (attrs) states. The store
uses it in two phases so that a refused event leaves no trace: :meth:`Projection.stage`
returns a :class:`ProjectionStage` that applies events against a private overlay (raising
:class:`~chanlog.errors.InvalidTransition` for an illegal one), and only after the backend
committed does the store call :meth:`ProjectionStage.commit`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from chanlog.events.base import Event

__all__ = ["DeferredState", "Projection", "ProjectionStage"]


class DeferredState:
    """One entity's state still in its dumped form: what a snapshot hands a projection's
    ``load`` so that a restore does not rebuild every entity up front. ``raw()`` returns
    the data :meth:`~chanlog.projections.EntityProjection.dump_state` wrote; the projection
    builds the state from it on the entity's first use."""

    __slots__ = ("_data",)

    def __init__(self, data: Any) -> None:
        self._data = data

    def raw(self) -> Any:
        """The dumped state."""
        return self._data


class ProjectionStage(Protocol):
    """Pending changes of one write transaction."""

    def apply(self, event: Event, offset: int) -> None:
        """Fold ``event`` (to be committed at ``offset``) into the overlay, or raise
        :class:`~chanlog.errors.InvalidTransition` leaving the overlay as it was."""
        ...

    def commit(self) -> None:
        """Make the overlay the projection's current state."""
        ...


@runtime_checkable
class Projection(Protocol):
    """A fold of one entity kind, registered through ``chanlog_register_projections``.

    Optional attribute ``event_types``: a frozenset of the event classes the projection reacts
    to (folds, checks or indexes). When present, the store hands it only those events; when
    absent or ``None`` it sees every event.
    """

    name: str
    """The kind it folds (``"objective"``, ``"channel"``, ``"messages"``...)."""

    schema_version: int
    """Bumped whenever the state's shape or the fold's meaning changes; snapshots written
    with another version are ignored."""

    def stage(self) -> ProjectionStage:
        """Begin staging changes for one write transaction."""
        ...

    def get(self, entity_id: str) -> Any | None:
        """The current state of an entity, or ``None`` when it does not exist."""
        ...

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """The entities of this kind that ``event`` changes (lower-cased ids)."""
        ...

    def fold(self, state: Any | None, event: Event, entity_id: str, offset: int) -> Any:
        """Pure, per-entity fold used by reconstruction: the state of ``entity_id`` after
        ``event``. Raises :class:`~chanlog.errors.InvalidTransition`."""
        ...

    def dump(self) -> Any:
        """All current states as JSON-compatible data (for snapshots)."""
        ...

    def dump_state(self, state: Any) -> Any:
        """One entity's state as JSON-compatible data (the per-entity part of :meth:`dump`)."""
        ...

    def load_state(self, data: Any) -> Any:
        """The state :meth:`dump_state` wrote; raises :class:`~chanlog.errors.DecodeError`
        when ``data`` is not such a state."""
        ...

    def state_in_dump(self, data: Any, entity_id: str) -> Any | None:
        """The state of ``entity_id`` inside ``data`` from :meth:`dump`, or ``None``; lets
        reconstruction start from a snapshot without loading every entity of it."""
        ...

    def load(self, data: Any) -> None:
        """Replace all current states with ``data`` from :meth:`dump`."""
        ...

    def __len__(self) -> int:
        """How many entities exist."""
        ...
