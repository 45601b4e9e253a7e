"""Entity checkpoints: in-memory states of single entities every few of their events, so
that time travel to any offset folds at most a few events (ADR 0020).

A snapshot holds every entity as of one offset, so an entity's replay from it is as long as
the entity's events since that offset: up to the snapshot interval. A checkpoint is one
entity's state right after one of its events, kept by the store that folded it: the inline
projections leave one every :attr:`EntityCheckpoints.every` events of an entity, and a
reconstruction leaves them along the stretch it had to fold. A reconstruction starts from
whichever is nearer, the snapshot or the checkpoint.

Checkpoints are never written anywhere: states are immutable values, so keeping one is
keeping a reference, and a restarted store earns them again as it folds. They are bounded
(:attr:`EntityCheckpoints.limit` in all); the entities used least recently lose theirs first.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from typing import Any

from chanlog.errors import InvalidArgument

__all__ = ["EntityCheckpoints"]

DEFAULT_CHECKPOINT_EVERY = 32
"""Events of one entity between two checkpoints: folding 32 events costs well under 1 ms."""

DEFAULT_LIMIT = 65_536
"""Checkpoints held by one store, across all entities."""


class _Trail:
    """One entity's checkpoints, sorted by offset."""

    __slots__ = ("offsets", "states")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.states: list[Any] = []


class EntityCheckpoints:
    """The checkpoints of one store, keyed by ``(projection name, entity id)``.

    Args:
        every: events of one entity between two checkpoints; ``0`` keeps none.
        limit: checkpoints kept in all; beyond it the least recently used entities drop
            theirs.

    A checkpoint ``(start, state)`` means: ``state`` is the entity after all of its events at
    offsets ``< start``. Thread-safe.
    """

    def __init__(self, every: int = DEFAULT_CHECKPOINT_EVERY, limit: int = DEFAULT_LIMIT) -> None:
        for name, value in (("every", every), ("limit", limit)):
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"checkpoint {name} must be an int >= 0, got {value!r}")
        self.every = every
        self.limit = limit
        self._trails: OrderedDict[tuple[str, str], _Trail] = OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether checkpoints are kept at all."""
        return self.every > 0 and self.limit > 0

    def __len__(self) -> int:
        return self._count

    def record(self, kind: str, entity_id: str, start: int, state: Any) -> None:
        """Keep ``state`` as the ``kind`` entity ``entity_id`` after its events ``< start``."""
        if not self.enabled:
            return
        key = (kind, entity_id)
        with self._lock:
            trail = self._trails.get(key)
            if trail is None:
                trail = self._trails[key] = _Trail()
            else:
                self._trails.move_to_end(key)
            offsets = trail.offsets
            if not offsets or start > offsets[-1]:  # the common case: the trail grows
                offsets.append(start)
                trail.states.append(state)
            else:
                position = bisect_left(offsets, start)
                if position < len(offsets) and offsets[position] == start:
                    return  # the same checkpoint, already kept
                offsets.insert(position, start)
                trail.states.insert(position, state)
            self._count += 1
            while self._count > self.limit:
                _, evicted = self._trails.popitem(last=False)
                self._count -= len(evicted.offsets)

    def nearest(self, kind: str, entity_id: str, at: int) -> tuple[Any, int] | None:
        """``(state, start)`` of the entity's latest checkpoint with ``start <= at``, or
        ``None``."""
        key = (kind, entity_id)
        with self._lock:
            trail = self._trails.get(key)
            if trail is None:
                return None
            position = bisect_right(trail.offsets, at)
            if not position:
                return None
            self._trails.move_to_end(key)
            return trail.states[position - 1], trail.offsets[position - 1]

    def forget(self, kind: str) -> None:
        """Forget the checkpoints of every ``kind`` entity (its projection was replaced)."""
        with self._lock:
            for key in [key for key in self._trails if key[0] == kind]:
                self._count -= len(self._trails.pop(key).offsets)

    def clear(self) -> None:
        """Forget every checkpoint."""
        with self._lock:
            self._trails.clear()
            self._count = 0
