"""A reusable base for projections that fold one state per entity.

:class:`EntityProjection` implements the store-facing :class:`~chanlog.projections.Projection`
protocol once: committed states live in a dict, a write transaction stages new states in an
overlay (:class:`EntityStage`) so a refused event leaves nothing behind, and an optional
*index* (a small key → JSON-scalar map, also staged) carries what cross-entity rules need.
Subclasses supply the pure per-entity fold and the state codec.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from chanlog.checkpoints import EntityCheckpoints
from chanlog.errors import DecodeError, InvalidArgument, InvalidTransition
from chanlog.events.base import Event
from chanlog.fields import InlineCheck
from chanlog.projections.base import DeferredState

__all__ = ["EntityProjection", "EntityStage", "IndexValue"]

S = TypeVar("S")
IndexValue = str | int | bool
"""What an index entry may hold (JSON scalars, so the index snapshots as is)."""

_MISSING: Any = object()


class EntityStage(Generic[S]):
    """The pending changes of one write transaction: an overlay of states and index
    entries over the projection's committed ones. :meth:`apply` is all-or-nothing per event."""

    __slots__ = ("_index", "_marks", "_projection", "_states")

    def __init__(self, projection: EntityProjection[S]) -> None:
        self._projection = projection
        self._states: dict[str, S] = {}
        self._index: dict[str, IndexValue | None] = {}
        self._marks: list[tuple[str, int, S]] = []

    def lookup(self, entity_id: str) -> S | None:
        """The entity's state as staged so far (or as committed)."""
        state = self._states.get(entity_id, _MISSING)
        if state is _MISSING:
            return self._projection._committed(entity_id)
        return state  # type: ignore[no-any-return]

    def index_get(self, key: str) -> IndexValue | None:
        """An index entry as staged so far (or as committed)."""
        value = self._index.get(key, _MISSING)
        if value is _MISSING:
            return self._projection._index.get(key)
        return value  # type: ignore[no-any-return]

    def apply(self, event: Event, offset: int) -> None:
        """Fold ``event`` into the overlay, or raise :class:`InvalidTransition` and leave the
        overlay exactly as it was."""
        projection = self._projection
        staged = self._states
        committed = projection._states
        fold = projection.fold
        changes: list[tuple[str, S | None, S]] = []
        for entity_id in projection.entity_ids(event):
            # Inlined lookup(): this runs for every event of every append.
            before = staged.get(entity_id, _MISSING)
            if before is _MISSING:
                before = committed.get(entity_id)
                if type(before) is DeferredState:
                    before = projection._resolve(entity_id, before)
            after = fold(before, event, entity_id, offset)
            if after is not None and after is not before:
                changes.append((entity_id, before, after))
        crossing = projection.cross_entity_event_types
        if crossing is None or type(event) in crossing:
            projection.check(self, event, changes)
            for entity_id, _, after in changes:
                staged[entity_id] = after
            for key, value in projection.index_updates(event, changes):
                self._index[key] = value
        else:
            for entity_id, _, after in changes:
                staged[entity_id] = after
        checkpoints = projection.checkpoints
        if checkpoints is not None and changes:
            # Counted even if the transaction is refused later: that only shifts where the
            # next checkpoint falls. What is recorded waits for commit().
            since = projection._since_checkpoint
            every = checkpoints.every
            for entity_id, _, after in changes:
                count = since.get(entity_id, 0) + 1
                if count >= every:
                    self._marks.append((entity_id, offset + 1, after))
                    count = 0
                since[entity_id] = count

    def commit(self) -> None:
        """Make the overlay the projection's committed state."""
        projection = self._projection
        projection._commit(self._states, self._index)
        self._states = {}
        self._index = {}
        if self._marks:
            checkpoints = projection.checkpoints
            if checkpoints is not None:
                for entity_id, start, state in self._marks:
                    checkpoints.record(projection.name, entity_id, start, state)
            self._marks = []


class EntityProjection(Generic[S]):
    """Base class of the built-in projections; third-party projections may derive from it.

    Subclasses set ``name`` and ``schema_version`` and implement :meth:`entity_ids`,
    :meth:`fold`, :meth:`dump_state` and :meth:`load_state`; they may override
    :meth:`check` and :meth:`index_updates` for rules that span entities (and then may name
    the event types those act on in ``cross_entity_event_types``, so that the stage skips
    them for every other event), and :meth:`_on_commit` to keep query indexes that no rule
    needs.
    """

    name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1
    entity_kind: ClassVar[str] = ""
    """What one entity is called when that is not :attr:`name` (``""``: the same); the
    kind ``reconstruct`` and ``chanlog show`` accept besides the name (see
    :class:`~chanlog.projections.base.DescribesEntities`)."""
    entity_id_check: ClassVar[InlineCheck | None] = None
    """The form of an entity id (a validator of :mod:`chanlog.fields`, e.g.
    ``fields.bytes32``); ``None`` (the default): any string."""
    event_types: ClassVar[frozenset[type[Event]] | None] = None
    """The event classes this projection reacts to; the store routes other events past it.
    ``None`` (the default): every event."""

    defers_state_loading: ClassVar[bool] = True
    """:meth:`load` takes :class:`~chanlog.projections.DeferredState` entities."""

    cross_entity_event_types: ClassVar[frozenset[type[Event]] | None] = None
    """The event types :meth:`check` and :meth:`index_updates` act on; the stage skips both
    for any other type. ``None`` (the default) calls them for every event."""

    def __init__(self) -> None:
        # A state may be a DeferredState after a lazy restore (see load()); every read goes
        # through _committed()/_resolve(), which decode it once.
        self._states: dict[str, S | DeferredState] = {}
        self._index: dict[str, IndexValue] = {}
        self._resolving = threading.Lock()
        self.checkpoints: EntityCheckpoints | None = None
        """Where committed folds leave entity checkpoints (set by the store that folds this
        projection inline; ``None``: nowhere)."""
        self._since_checkpoint: dict[str, int] = {}

    # -- what subclasses provide ---------------------------------------------------------

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        """The ids (lower-cased) of the entities of this kind that ``event`` concerns."""
        raise NotImplementedError

    def fold(self, state: S | None, event: Event, entity_id: str, offset: int) -> S | None:
        """The pure per-entity fold: the state after ``event``, or ``None`` when the event
        leaves an absent entity absent. Raises :class:`InvalidTransition`."""
        raise NotImplementedError

    def dump_state(self, state: S) -> Any:
        """One state as JSON-compatible data."""
        raise NotImplementedError

    def load_state(self, data: Any) -> S:
        """The state :meth:`dump_state` wrote; :class:`DecodeError` for anything else."""
        raise NotImplementedError

    def check(
        self, stage: EntityStage[S], event: Event, changes: list[tuple[str, S | None, S]]
    ) -> None:
        """Cross-entity rules, checked at append time before ``changes`` are staged (the
        per-entity fold has already accepted them). The default checks nothing."""

    def index_updates(
        self, event: Event, changes: list[tuple[str, S | None, S]]
    ) -> Iterable[tuple[str, IndexValue | None]]:
        """Index entries to set (``None`` removes) once ``changes`` are staged."""
        return ()

    def _on_commit(self, entity_id: str, before: S | None, after: S) -> None:
        """Called per committed state change; the default does nothing."""

    def _rebuild_derived(self) -> None:
        """Recompute query indexes kept by :meth:`_on_commit` after :meth:`load`."""

    def check_entity_id(self, entity_id: str) -> None:
        """Refuse an id that :attr:`entity_id_check` rejects.

        Raises:
            InvalidArgument: naming the id, the kind and the rule.
        """
        check = self.entity_id_check
        if check is not None and not check.accepts(entity_id):
            kind = self.entity_kind or self.name
            article = "an" if kind[:1] in tuple("aeiou") else "a"
            raise InvalidArgument(
                f"{entity_id!r} is not {article} {kind} id: {kind} ids are {check.rule}"
            )

    # -- the store-facing protocol -------------------------------------------------------

    def stage(self) -> EntityStage[S]:
        """Begin staging one write transaction."""
        return EntityStage(self)

    def _committed(self, entity_id: str) -> S | None:
        """The committed state of an entity, decoding a deferred one."""
        state = self._states.get(entity_id)
        if isinstance(state, DeferredState):
            return self._resolve(entity_id, state)
        return state

    def _resolve(self, entity_id: str, deferred: DeferredState) -> S:
        """Decode a deferred state and keep it, unless a commit replaced it meanwhile (the
        lock makes check-and-set atomic against :meth:`_commit`)."""
        state = self.load_state(deferred.raw())
        with self._resolving:
            current = self._states.get(entity_id)
            if current is deferred:
                self._states[entity_id] = state
                return state
        resolved = self._committed(entity_id)
        if resolved is None:  # pragma: no cover - entities are never removed
            raise DecodeError(f"{self.name} {entity_id}: state vanished while decoding")
        return resolved

    def _resolve_all(self) -> dict[str, S]:
        """Every committed state, decoded."""
        resolved: dict[str, S] = {}
        for entity_id, state in list(self._states.items()):
            resolved[entity_id] = (
                self._resolve(entity_id, state) if isinstance(state, DeferredState) else state
            )
        return resolved

    def _commit(self, states: Mapping[str, S], index: Mapping[str, IndexValue | None]) -> None:
        committed = self._states
        with self._resolving:
            if type(self)._on_commit is EntityProjection._on_commit:
                committed.update(states)
                on_commit = False
            else:
                on_commit = True
        if on_commit:
            for entity_id, after in states.items():
                before = self._committed(entity_id)
                with self._resolving:
                    committed[entity_id] = after
                self._on_commit(entity_id, before, after)
        for key, value in index.items():
            if value is None:
                self._index.pop(key, None)
            else:
                self._index[key] = value

    def get(self, entity_id: str) -> S | None:
        """The current state of an entity (id compared case-insensitively), or ``None``."""
        return self._committed(entity_id.lower())

    def ids(self) -> Iterator[str]:
        """The ids of every entity this projection holds."""
        return iter(list(self._states))

    def states(self) -> Mapping[str, S]:
        """A read-only copy of every current state, by entity id."""
        return dict(self._resolve_all())

    def dump(self) -> dict[str, Any]:
        """Every state and the index, as JSON-compatible data."""
        dump_state = self.dump_state
        return {
            "states": {
                # A deferred state is still in dumped form: written back as it was read.
                entity_id: state.raw() if isinstance(state, DeferredState) else dump_state(state)
                for entity_id, state in sorted(self._states.items())
            },
            "index": dict(sorted(self._index.items())),
        }

    def load(self, data: Any) -> None:
        """Replace every state and the index with ``data`` from :meth:`dump`; on a
        :class:`DecodeError` nothing is replaced.

        A state given as a :class:`~chanlog.projections.DeferredState` is kept as is and
        decoded on the entity's first use (a restore from a snapshot then costs what the
        snapshot's header costs, not what its every entity costs)."""
        if not isinstance(data, Mapping):
            raise DecodeError(f"{self.name} snapshot: expected an object, got {_kind(data)}")
        raw_states = data.get("states")
        raw_index = data.get("index")
        if not isinstance(raw_states, Mapping) or not isinstance(raw_index, Mapping):
            raise DecodeError(f"{self.name} snapshot: needs 'states' and 'index' objects")
        states: dict[str, S | DeferredState] = {}
        for entity_id, raw in raw_states.items():
            states[str(entity_id)] = raw if type(raw) is DeferredState else self.load_state(raw)
        index: dict[str, IndexValue] = {}
        for key, value in raw_index.items():
            if not isinstance(value, str | int | bool):
                raise DecodeError(f"{self.name} snapshot: index entry {key!r} is not a scalar")
            index[str(key)] = value
        self._states = states
        self._index = index
        self._rebuild_derived()

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} v{self.schema_version}: {len(self)} entities>"

    # -- helpers for subclasses ----------------------------------------------------------

    def refuse(self, message: str, *, entity_id: str, event: Event, rule: str) -> InvalidTransition:
        """Build the error for an illegal transition (``raise self.refuse(...)``)."""
        return InvalidTransition(
            f"{self.name} {entity_id}: {event.event_type} refused ({rule}): {message}",
            kind=self.name,
            entity_id=entity_id,
            event_type=event.event_type,
            rule=rule,
        )


def _kind(value: object) -> str:
    return type(value).__name__
