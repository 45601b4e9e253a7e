"""State reconstruction with time travel (DESIGN section 5).

``reconstruct(kind, entity_id, at)`` is the state of one entity after all of its events with
offset ``< at``. It starts from the nearer of the entity's state in the newest usable
snapshot at or before ``at`` and its latest checkpoint, and folds only that entity's events
since (read through the backend's per-entity index), so its cost does not depend on how
long the log is. Without ``at`` it answers from the live projection in O(1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from chanlog.checkpoints import EntityCheckpoints
from chanlog.errors import InvalidArgument, NotFound
from chanlog.events.base import Event
from chanlog.projections.base import Projection
from chanlog.snapshots.manager import SnapshotManager

__all__ = ["ReconstructionSource", "StateReconstructor"]


class ReconstructionSource(Protocol):
    """What reconstruction reads: a log, its snapshots, checkpoints and projections (a
    store)."""

    @property
    def snapshots(self) -> SnapshotManager:
        """The snapshots of the log."""
        ...

    @property
    def checkpoints(self) -> EntityCheckpoints:
        """The entity checkpoints of the log."""
        ...

    def inline_projection(self, name: str) -> Projection | None:
        """The projection ``name`` folded inline, or ``None``."""
        ...

    def fresh_projection(self, name: str) -> Projection:
        """A new instance of the registered projection ``name``."""
        ...

    def stream_events(
        self, entity_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, Event]]:
        """``(offset, event)`` of one entity's records in ``[start, end)``."""
        ...

    def __len__(self) -> int: ...


class StateReconstructor:
    """Rebuilds entity states of one log, at its end or as of any offset.

    Args:
        source: the log (a store) whose records are folded.
        use_snapshots: start from snapshots and checkpoints when they help (default);
            ``False`` always folds the entity from its first event (what a snapshot must
            agree with).
    """

    def __init__(self, source: ReconstructionSource, *, use_snapshots: bool = True) -> None:
        self._source = source
        self._use_snapshots = use_snapshots
        self._private: dict[str, Projection] = {}
        self.folded_count = 0
        """Events folded by this reconstructor so far (what the cost tests count)."""

    def _projection(self, kind: str) -> tuple[Projection, bool]:
        """The projection of ``kind`` and whether it is folded inline."""
        if type(kind) is not str:
            raise InvalidArgument(f"kind must be a projection name, got {kind!r}")
        inline = self._source.inline_projection(kind)
        if inline is not None:
            return inline, True
        # Not folded inline: reconstruct with a private instance of the registered kind.
        private = self._private.get(kind)
        if private is None:
            try:
                private = self._source.fresh_projection(kind)
            except Exception as exc:
                raise NotFound(f"no projection named {kind!r}: {exc}") from exc
            self._private[kind] = private
        return private, False

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
        projection, inline = self._projection(kind)
        key = entity_id.lower()
        source = self._source
        if at is None and inline:
            state = projection.get(key)
            if state is None:
                raise NotFound(f"no {kind} {entity_id}")
            return state
        length = len(source)
        end = length if at is None or at > length else at
        state, start = self._starting_point(projection, kind, key, end)
        fold = projection.fold
        folded = 0
        checkpoints = source.checkpoints
        # Leave checkpoints along a long stretch, so the next visit folds little of it.
        every = checkpoints.every if self._use_snapshots and checkpoints.enabled else 0
        for offset, event in source.stream_events(key, start, end):
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

    def _starting_point(
        self, projection: Projection, kind: str, key: str, end: int
    ) -> tuple[Any, int]:
        """The nearest known state of the entity at or before ``end``, and its offset."""
        if not self._use_snapshots:
            return None, 0
        source = self._source
        nearer = source.checkpoints.nearest(kind, key, end)
        state, start = source.snapshots.entity_state(projection, key, end)
        if nearer is not None and nearer[1] > start:
            return nearer
        return state, start
