"""State reconstruction with time travel (DESIGN section 5).

``reconstruct(kind, entity_id, at)`` is the state of one entity after all of its events with
offset ``< at``. It starts from the nearer of the entity's state in the newest usable
snapshot at or before ``at`` and its latest checkpoint, and folds only that entity's events
since (read through the backend's per-entity index), so its cost does not depend on how
long the log is. Without ``at`` it answers from the live projection in O(1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, cast

import attrs

from chanlog.checkpoints import EntityCheckpoints
from chanlog.errors import InvalidArgument, NotFound
from chanlog.events.base import Event
from chanlog.plugins.host import PluginHost
from chanlog.projections.base import DescribesEntities, Projection, SnapshotsPerEntity
from chanlog.snapshots.manager import SnapshotManager

__all__ = ["ReconstructionSource", "StateReconstructor"]


def _kinds_text(kinds: Mapping[str, str]) -> str:
    """``channel, message or messages, objective``: each projection once, by its names."""
    names: dict[str, list[str]] = {}
    for kind, name in sorted(kinds.items()):
        names.setdefault(name, []).append(kind)
    return ", ".join(" or ".join(spellings) for spellings in sorted(names.values())) or "none"


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

    @property
    def plugins(self) -> PluginHost:
        """The host whose registered projections are the kinds."""
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
        self._inline_projection = source.inline_projection
        self._use_snapshots = use_snapshots
        self._private: dict[str, tuple[int, Projection]] = {}  # name -> (generation, it)
        self._describes: dict[type, bool] = {}
        self._kinds: tuple[int, dict[str, str]] = (-1, {})
        # kind -> (plugin generation, projection name, projection, folded inline): what
        # every call would otherwise work out again.
        self._resolved: dict[str, tuple[int, str, Projection, bool]] = {}
        self.folded_count = 0
        """Events folded by this reconstructor so far (what the cost tests count)."""
        self.before_now: Callable[[], None] | None = None
        """Called before a state is answered from the inline projection ("now"): a store on
        a shared log folds what other processes appended (ADR 0060)."""

    def resolve_kind(self, kind: str) -> str:
        """The name of the projection whose entities ``kind`` names: a registered
        projection's name, or the entity kind it declares (``message`` for the
        ``messages`` projection; see :meth:`kinds`).

        Raises:
            InvalidArgument: ``kind`` is neither; the message lists the kinds.
        """
        if type(kind) is not str:
            raise InvalidArgument(f"kind must be a projection name, got {kind!r}")
        if kind in self._source.plugins.projections:
            return kind
        kinds = self.kinds()
        name = kinds.get(kind)
        if name is None:
            raise InvalidArgument(f"unknown kind {kind!r}; the kinds are {_kinds_text(kinds)}")
        return name

    def kinds(self) -> dict[str, str]:
        """Kind → projection name: every registered projection by its name, and by the
        :attr:`~chanlog.projections.base.DescribesEntities.entity_kind` it declares."""
        host = self._source.plugins
        generation, kinds = self._kinds
        if generation == host.generation:
            return kinds
        kinds = {name: name for name in host.projections}
        for name in list(kinds):
            projection = self._projection(name)[0]
            if self._describes_entities(projection):
                kind = cast(DescribesEntities, projection).entity_kind
                if kind and kind not in kinds:
                    kinds[kind] = name
        self._kinds = (generation, kinds)
        return kinds

    def _describes_entities(self, projection: Projection) -> bool:
        describes = self._describes.get(type(projection))
        if describes is None:
            # An isinstance against a protocol costs microseconds: once per class.
            describes = isinstance(projection, DescribesEntities)
            self._describes[type(projection)] = describes
        return describes

    def check_entity_id(self, projection: Projection, entity_id: str) -> None:
        """Refuse an ``entity_id`` that is not a string, or that ``projection`` says cannot
        be one of its ids (:class:`~chanlog.projections.base.DescribesEntities`).

        Raises:
            InvalidArgument: naming the rule.
        """
        if type(entity_id) is not str:
            raise InvalidArgument(f"entity_id must be a string, got {type(entity_id).__name__}")
        if self._describes_entities(projection):
            cast(DescribesEntities, projection).check_entity_id(entity_id)

    def _projection(self, name: str) -> tuple[Projection, bool]:
        """The projection ``name`` (resolved by :meth:`resolve_kind`) and whether it is
        folded inline."""
        inline = self._source.inline_projection(name)
        if inline is not None:
            return inline, True
        # Not folded inline: reconstruct with a private instance of the registered kind,
        # the one registered now (a plugin may have been replaced since the last call).
        generation = self._source.plugins.generation
        cached = self._private.get(name)
        if cached is not None and cached[0] == generation:
            return cached[1], False
        private = self._source.fresh_projection(name)
        if cached is not None:
            if _folds_alike(cached[1], private):
                private = cached[1]
            else:
                # The checkpoints of this kind were left by the replaced projection's folds:
                # states of another fold, which the new one would start from.
                self._source.checkpoints.forget(name)
        self._private[name] = (generation, private)
        return private, False

    def reconstruct(self, kind: str, entity_id: str, at: int | None = None) -> Any:
        """The state of ``entity_id`` (a ``kind`` entity) after its events at offsets
        ``< at``; ``at=None`` means the whole log.

        Raises:
            NotFound: the entity has no state by then.
            InvalidArgument: ``kind`` is not a kind (see :meth:`resolve_kind`);
                ``entity_id`` is not a string, or not the form of id that kind has;
                ``at`` is negative, not an int, or beyond the end of the log.
            InvalidTransition: the log holds an illegal transition for this entity (a log
                written with validation off).
        """
        resolved = self._resolved.get(kind) if type(kind) is str else None
        if resolved is None or resolved[0] != self._source.plugins.generation:
            resolved = self._resolve(kind)
        _, name, projection, inline = resolved
        self.check_entity_id(projection, entity_id)
        if at is not None and (type(at) is not int or at < 0):
            raise InvalidArgument(f"at must be a non-negative int, got {at!r}")
        key = entity_id.lower()
        source = self._source
        if at is None and inline:
            return self.now(projection, kind, entity_id)
        length = len(source)
        if at is not None and at > length:
            raise InvalidArgument(f"at {at} is beyond the end of the log ({length} events)")
        end = length if at is None else at
        state, start = self._starting_point(projection, name, key, end)
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
                    checkpoints.record(name, key, offset + 1, state)
        self.folded_count += folded
        if state is None:
            where = "" if at is None else f" before offset {at}"
            raise NotFound(f"no {kind} {entity_id}{where}")
        return state

    def state_data(self, kind: str, entity_id: str, at: int | None = None) -> Any:
        """The state :meth:`reconstruct` returns, as plain data (what ``chanlog show
        --json`` prints as ``"state"``): the projection's ``dump_state`` when it dumps one
        entity (:class:`~chanlog.projections.SnapshotsPerEntity`, as every built-in one
        does), else an attrs state as a dict (``attrs.asdict``), else the state itself (a
        plugin's projection may fold to an int).

        Raises:
            NotFound, InvalidArgument, InvalidTransition: as :meth:`reconstruct`.
        """
        state = self.reconstruct(kind, entity_id, at)
        projection = self._projection(self.resolve_kind(kind))[0]
        if isinstance(projection, SnapshotsPerEntity):
            return projection.dump_state(state)
        return attrs.asdict(state) if attrs.has(type(state)) else state

    def now(self, projection: Projection, kind: str, entity_id: str) -> Any:
        """The state of ``entity_id`` in ``projection``, folded inline, as it is now (after
        :attr:`before_now`); :class:`NotFound` when it does not exist.

        Raises:
            InvalidArgument: ``entity_id`` is not an id of that kind.
            StorageError: :attr:`before_now` cannot read the log's head.
        """
        self.check_entity_id(projection, entity_id)
        if self.before_now is not None:
            self.before_now()
        # A store folding the log again after it lost records (ADR 0043), maybe just now in
        # before_now, folds into new instances: the one inline now answers.
        inline = self._inline_projection(projection.name)
        state = (projection if inline is None else inline).get(entity_id.lower())
        if state is None:
            raise NotFound(f"no {kind} {entity_id}")
        return state

    def _resolve(self, kind: str) -> tuple[int, str, Projection, bool]:
        """What :meth:`reconstruct` needs to know of ``kind``, worked out and remembered
        until the plugins change (see :meth:`resolve_kind`)."""
        generation = self._source.plugins.generation
        name = self.resolve_kind(kind)
        projection, inline = self._projection(name)
        resolved = (generation, name, projection, inline)
        self._resolved[kind] = resolved
        return resolved

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


def _folds_alike(before: Projection, now: Projection) -> bool:
    """Whether ``now`` folds as ``before`` did: the same class at the same schema version."""
    return type(before) is type(now) and before.schema_version == now.schema_version
