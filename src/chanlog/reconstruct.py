"""State reconstruction with time travel (DESIGN section 5).

``reconstruct(kind, entity_id, at)`` is the state of one entity after all of its events with
offset ``< at``. It starts from the entity's state in the newest usable snapshot at or before
``at`` and folds only that entity's events since (read through the store's per-entity
index), so its cost does not depend on how long the log is. Without ``at`` it answers from
the live projection in O(1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chanlog.errors import InvalidArgument, NotFound
from chanlog.projections.base import Projection
from chanlog.projections.channel import ChannelState
from chanlog.projections.objective import ObjectiveState

if TYPE_CHECKING:
    from chanlog.store import EventStore

__all__ = ["StateReconstructor"]


class StateReconstructor:
    """Rebuilds entity states of one store, at its end or as of any offset.

    Args:
        store: the store whose log is folded.
        use_snapshots: start from snapshots when they help (default); ``False`` always
            folds the entity from its first event (what a snapshot must agree with).
    """

    def __init__(self, store: EventStore, *, use_snapshots: bool = True) -> None:
        self._store = store
        self._use_snapshots = use_snapshots
        self.folded_count = 0
        """Events folded by this reconstructor so far (what the cost tests count)."""

    def _projection(self, kind: str) -> Projection:
        if type(kind) is not str:
            raise InvalidArgument(f"kind must be a projection name, got {kind!r}")
        inline = self._store._projections.get(kind)
        if inline is not None:
            return inline
        # Not folded inline: reconstruct with a private instance of the registered kind.
        try:
            projection: Projection = self._store.plugins.lookup("projections", kind)()
        except Exception as exc:
            raise NotFound(f"no projection named {kind!r}: {exc}") from exc
        return projection

    def reconstruct(self, kind: str, entity_id: str, at: int | None = None) -> Any:
        """The state of ``entity_id`` (a ``kind`` entity) after its events at offsets
        ``< at``; ``at=None`` means the whole log.

        Raises:
            NotFound: the entity has no state by then (or ``kind`` is unknown).
            InvalidArgument: ``at`` is negative or not an int; ``entity_id`` not a string.
            InvalidTransition: the log holds an illegal transition for this entity (a log
                written with validation off).
        """
        if type(entity_id) is not str:
            raise InvalidArgument(f"entity_id must be a string, got {type(entity_id).__name__}")
        if at is not None and (type(at) is not int or at < 0):
            raise InvalidArgument(f"at must be a non-negative int, got {at!r}")
        projection = self._projection(kind)
        key = entity_id.lower()
        store = self._store
        if at is None and store._projections.get(kind) is projection:
            state = projection.get(key)
            if state is None:
                raise NotFound(f"no {kind} {entity_id}")
            return state
        length = len(store)
        end = length if at is None or at > length else at
        state, start = None, 0
        checkpoints = store.checkpoints
        if self._use_snapshots:
            state, start = store.snapshots.entity_state(projection, key, end)
            nearer = checkpoints.nearest(kind, key, end)
            if nearer is not None and nearer[1] > start:
                state, start = nearer
        fold = projection.fold
        folded = 0
        # Leave checkpoints along a long stretch, so the next visit folds little of it.
        every = checkpoints.every if self._use_snapshots and checkpoints.enabled else 0
        for offset, event in store.stream_events(key, start, end):
            after = fold(state, event, key, offset)
            folded += 1
            if after is not None:
                state = after
                if every and folded % every == 0:
                    checkpoints.record(kind, key, offset + 1, state)
        self.folded_count += folded
        if state is None:
            where = "" if at is None else f" before offset {at}"
            raise NotFound(f"no {kind} {entity_id}{where}")
        return state

    def reconstruct_objective(self, objective_id: str, at: int | None = None) -> ObjectiveState:
        """The :class:`~chanlog.projections.ObjectiveState` of an objective (see
        :meth:`reconstruct`)."""
        state: ObjectiveState = self.reconstruct("objective", objective_id, at)
        return state

    def reconstruct_channel(self, channel_id: str, at: int | None = None) -> ChannelState:
        """The :class:`~chanlog.projections.ChannelState` of a channel (see
        :meth:`reconstruct`)."""
        state: ChannelState = self.reconstruct("channel", channel_id, at)
        return state
