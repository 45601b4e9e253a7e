"""The projection contract the store folds every committed event through.

A projection folds the events of one entity kind into immutable (attrs) states. The store
uses it in two phases so that a refused event leaves no trace: :meth:`Projection.stage`
returns a :class:`ProjectionStage` that applies events against a private overlay (raising
:class:`~chanlog.errors.InvalidTransition` for an illegal one), and only after the backend
committed does the store call :meth:`ProjectionStage.commit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chanlog.events.base import Event

if TYPE_CHECKING:
    from chanlog.checkpoints import EntityCheckpoints

__all__ = [
    "PROJECTION_MEMBERS",
    "DeferredState",
    "DefersStateLoading",
    "DescribesEntities",
    "LeavesCheckpoints",
    "Projection",
    "ProjectionStage",
    "RoutedProjection",
    "SnapshotsPerEntity",
]


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

    These members are all a projection needs: the store folds it inline, checkpoints it,
    snapshots it (whole, through :meth:`dump`/:meth:`load`) and reconstructs any entity
    of it at any offset. A projection may also offer the optional capabilities below
    (:class:`RoutedProjection`, :class:`SnapshotsPerEntity`, :class:`LeavesCheckpoints`);
    the store detects them once, when the projection is created.
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

    def load(self, data: Any) -> None:
        """Replace all current states with ``data`` from :meth:`dump`."""
        ...

    def __len__(self) -> int:
        """How many entities exist."""
        ...


PROJECTION_MEMBERS = (
    "name",
    "schema_version",
    "stage",
    "get",
    "entity_ids",
    "fold",
    "dump",
    "load",
    "__len__",
)
"""What the store checks a new projection for (a :class:`~chanlog.errors.PluginError`
names whatever is missing)."""


@runtime_checkable
class RoutedProjection(Protocol):
    """Optional: a projection that names the event classes it reacts to, so the store hands
    it only those (any other event skips it). ``None`` means every event."""

    event_types: frozenset[type[Event]] | None


@runtime_checkable
class SnapshotsPerEntity(Protocol):
    """Optional: a projection whose :meth:`Projection.dump` is ``{"states": {id: data},
    ...}`` and that can dump and load one entity's state alone. Its snapshots are then
    indexed per entity, and reconstruction reads one entity out of a snapshot instead of
    loading all of them."""

    def dump_state(self, state: Any) -> Any:
        """One entity's state as JSON-compatible data (the per-entity part of ``dump``)."""
        ...

    def load_state(self, data: Any) -> Any:
        """The state :meth:`dump_state` wrote; raises :class:`~chanlog.errors.DecodeError`
        when ``data`` is not such a state."""
        ...


@runtime_checkable
class DescribesEntities(Protocol):
    """Optional: a projection that says what one of its entities is called and what a
    well-formed id of one looks like.

    ``reconstruct``, ``state`` and ``chanlog show`` then accept :attr:`entity_kind` as well
    as the projection's name (``message`` for the ``messages`` projection), and refuse a
    malformed id with :class:`~chanlog.errors.InvalidArgument` naming the rule, rather than
    looking it up and answering :class:`~chanlog.errors.NotFound`. The kind is read from the
    class a plugin registers, so declare :attr:`entity_kind` as a class attribute. The
    built-in projections, and every :class:`~chanlog.projections.EntityProjection`, have it.
    """

    entity_kind: str
    """One entity's name when it is not the projection's name (``""``: the same)."""

    def check_entity_id(self, entity_id: str) -> None:
        """Raise :class:`~chanlog.errors.InvalidArgument` naming the rule when ``entity_id``
        cannot be the id of an entity of this kind."""
        ...


@runtime_checkable
class DefersStateLoading(Protocol):
    """Optional: a projection whose :meth:`Projection.load` accepts a
    :class:`DeferredState` for any entity and builds it on first use, so a restore from a
    snapshot costs what the snapshot's header costs."""

    defers_state_loading: bool


@runtime_checkable
class LeavesCheckpoints(Protocol):
    """Optional: a projection that leaves entity checkpoints itself while it folds (the
    built-in ones do, at no extra cost). The store sets :attr:`checkpoints`; a projection
    without it gets checkpoints from the store, which reads the folded states back."""

    checkpoints: EntityCheckpoints | None
