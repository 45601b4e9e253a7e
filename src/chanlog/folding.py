"""The inline projections of one store: created, routed, staged and folded.

Every committed record passes through here, whether this store wrote it or found it in the
log (another process, an earlier run). Two paths share one routing table: a
:class:`WriteStage` folds the events of one write transaction into overlays that become
current only once the backend has committed, and :meth:`InlineProjections.fold_committed`
folds records already in the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chanlog.arguments import items_once
from chanlog.backends.base import Backend
from chanlog.checkpoints import EntityCheckpoints
from chanlog.errors import (
    ChanlogError,
    IntegrityError,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    PluginError,
)
from chanlog.events.base import Event
from chanlog.events.system import SnapshotCreated
from chanlog.folded_chain import CATCH_UP_MARK_EVERY, FoldedChain
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.plugins.host import PluginHost
from chanlog.projections.base import (
    LeavesCheckpoints,
    Projection,
    ProjectionStage,
    RoutedProjection,
)
from chanlog.reading import EventDecoder
from chanlog.records import Head, RecordedEvent, StoredRecord

__all__ = ["InlineProjections", "WriteStage", "instantiate_projection", "projection_names"]


def instantiate_projection(host: PluginHost, name: str) -> Projection:
    """A new instance of the projection registered as ``name``, checked against the
    :class:`~chanlog.projections.Projection` protocol.

    Raises:
        PluginError: no such projection, its factory failed, or what it built lacks a
            member of the protocol (each missing one is named).
    """
    projection: Projection = host.checked_lookup("projections", name)()
    return projection


def projection_names(host: PluginHost, names: object) -> list[str]:
    """The names of the projections to fold inline (``None``: every registered one).

    Raises:
        InvalidArgument: ``names`` is not a list of names.
    """
    if names is None:
        return list(host.projections)
    listed = items_once(
        names, lambda: f"projections must be a list of projection names, got {names!r}"
    )
    for name in listed:
        if type(name) is not str:
            raise InvalidArgument(f"projections must be names (strings), got {name!r}")
    return listed


class InlineProjections:
    """The projections a store folds inline, and how far into the log they are.

    Args:
        host: where projection names resolve.
        names: the projections to fold.
        checkpoints: where entity checkpoints go. A projection that
            :class:`~chanlog.projections.LeavesCheckpoints` leaves them itself; for any
            other, committed folds read the entity's state back every ``every`` events.
    """

    def __init__(
        self, host: PluginHost, names: Iterable[str], checkpoints: EntityCheckpoints
    ) -> None:
        self._host = host
        self.checkpoints = checkpoints
        self.folded = 0
        """How many records of the log the projections describe (offsets ``< folded``)."""
        self.chain = FoldedChain()
        """Where the fold ends in the log's hash chain (ADR 0047)."""
        self.last_snapshot_offset: int | None = None
        """The offset of the latest snapshot the folded records announce."""
        self._install({name: instantiate_projection(host, name) for name in names})

    def _install(self, projections: dict[str, Projection]) -> None:
        self.by_name: Mapping[str, Projection] = projections
        self._list = list(projections.values())
        self._routes: dict[type[Event], tuple[int, ...]] = {}
        sink = self.checkpoints if self.checkpoints.enabled else None
        self._watched: frozenset[int] = frozenset(
            position
            for position, projection in enumerate(self._list)
            if not isinstance(projection, LeavesCheckpoints) and sink is not None
        )
        for projection in self._list:
            if isinstance(projection, LeavesCheckpoints):
                projection.checkpoints = sink
        self._since: dict[tuple[int, str], int] = {}

    def __bool__(self) -> bool:
        return bool(self._list)

    def replace(self, projections: dict[str, Projection], folded: int) -> None:
        """Fold from ``projections`` on (restored from a snapshot at ``folded``)."""
        self._install(projections)
        self.folded = folded
        self.chain.restart(None if folded else GENESIS_CHAIN_HASH)

    def reset(self) -> None:
        """Forget every fold: fresh projections, no entity checkpoints, nothing folded."""
        self._install({name: instantiate_projection(self._host, name) for name in self.by_name})
        self.checkpoints.clear()
        self.folded = 0
        self.chain.restart(GENESIS_CHAIN_HASH)
        self.last_snapshot_offset = None

    def passed(self, record: StoredRecord) -> None:
        """A write committed records up to ``record``, folded by its stage."""
        self.folded = record.offset + 1
        self.chain.passed(record.offset, record.chain_hash)

    def find(self, name: str) -> Projection | None:
        """The projection ``name`` (``None``: not enabled); :class:`InvalidArgument` when
        ``name`` is not a string."""
        if type(name) is not str:
            raise InvalidArgument(f"a projection name must be a string, got {name!r}")
        return self.by_name.get(name)

    def get(self, name: str) -> Projection:
        """The projection ``name``; :class:`~chanlog.errors.NotFound` when not enabled."""
        found = self.find(name)
        if found is None:
            enabled = ", ".join(sorted(self.by_name)) or "none"
            raise NotFound(f"projection {name!r} is not enabled (enabled: {enabled})")
        return found

    def catch_up(
        self,
        backend: Backend,
        decoder: EventDecoder,
        head: Head,
        delivered: Callable[[Iterable[RecordedEvent]], Any] | None,
    ) -> bool:
        """Fold the records ``[folded, head.length)`` the backend holds (written by another
        process, or an earlier run), handing each to ``delivered`` when given.

        Returns:
            False, having folded nothing, when the log no longer holds the record folded
            last: it is shorter, or its chain hash there differs (ADR 0043, ADR 0047).
        """
        end, chain = head.length, self.chain
        if end <= self.folded:
            if end == self.folded and chain.hash is None:  # nothing folded since a refold
                if end:
                    chain.passed(end - 1, head.chain_hash)
                else:
                    chain.restart(head.chain_hash)
            return end == self.folded and chain.hash == head.chain_hash
        if not self._list and delivered is None:
            self.folded = end  # nobody needs these records decoded
            chain.passed(end - 1, head.chain_hash)
            return True
        last: StoredRecord | None = None
        for stored in backend.read(self.folded, end):
            if last is None:
                if not chain.continued_by(stored):
                    return False
                chain.hash = None  # until the last record is folded
            record = decoder.committed(stored)
            self.fold_committed(record.offset, record.event)
            if delivered is not None:
                delivered((record,))
            if not record.offset % CATCH_UP_MARK_EVERY:
                # a long first fold leaves ends to place a parting older than the store
                chain.mark(stored.offset, stored.chain_hash)
            last = stored
        if last is not None:
            chain.passed(last.offset, last.chain_hash)
        return True

    def versions(self) -> dict[str, int]:
        """Projection name → schema version."""
        return {name: projection.schema_version for name, projection in self.by_name.items()}

    def route(self, event_class: type[Event]) -> tuple[int, ...]:
        """Positions of the projections that react to ``event_class``: a
        :class:`~chanlog.projections.RoutedProjection` sees only the events it names."""
        route = self._routes.get(event_class)
        if route is None:
            route = tuple(
                position
                for position, projection in enumerate(self._list)
                if not isinstance(projection, RoutedProjection)
                or projection.event_types is None
                or event_class in projection.event_types
            )
            self._routes[event_class] = route
        return route

    def stage(self) -> WriteStage:
        """Begin folding the events of one write transaction."""
        return WriteStage(self)

    def note(self, event: Event) -> None:
        """Remember the snapshots the log announces (the policy counts from the latest one,
        whichever process took it)."""
        if type(event) is SnapshotCreated:
            last = self.last_snapshot_offset
            offset = event.snapshot_offset
            self.last_snapshot_offset = offset if last is None else max(last, offset)

    def failed(self, position: int, event: Event, offset: int, exc: Exception) -> PluginError:
        """The error for a projection that raised something other than a chanlog error
        (a fold refuses an event with :class:`InvalidTransition`; anything else is a bug):
        it names the projection, its plugin, the event and the offset."""
        name = self._list[position].name
        return PluginError(
            f"{self._host.describe('projections', name)} failed on {event.event_type} at "
            f"offset {offset}: {type(exc).__name__}: {exc} (a projection refuses an event "
            "by raising chanlog.InvalidTransition; anything else is a bug in it)",
            plugin=self._host.owner("projections", name),
        )

    def fold_committed(self, offset: int, event: Event) -> None:
        """Fold a record already in the log, at ``offset``.

        Raises:
            IntegrityError: the projections refuse it: the stored log breaks its own rules
                (it was written with validation off, or changed outside chanlog).
        """
        stage = WriteStage(self)
        try:
            stage.apply(event, offset)
        except InvalidTransition as exc:
            raise IntegrityError(
                f"offset {offset}: the stored {event.event_type} does not fold ({exc}); "
                "the log fails its own rules (written with validation off, or changed "
                "outside chanlog): run `chanlog verify`, and `chanlog log` to look at it",
                offset=offset,
            ) from exc
        stage.commit()
        self.folded = offset + 1

    def _after_commit(self, touched: list[tuple[int, Event, int]]) -> None:
        """Leave checkpoints for the projections that do not leave their own."""
        every = self.checkpoints.every
        since = self._since
        latest: dict[tuple[int, str], int] = {}
        due: set[tuple[int, str]] = set()
        for position, event, offset in touched:  # in offset order
            for entity_id in self._list[position].entity_ids(event):
                key = (position, entity_id)
                latest[key] = offset
                count = since[key] = since.get(key, 0) + 1
                if count >= every:
                    due.add(key)
        for key in due:
            position, entity_id = key
            projection = self._list[position]
            state = projection.get(entity_id)
            if state is not None:
                # The state after the whole transaction is the state right after the
                # entity's last event in it.
                self.checkpoints.record(projection.name, entity_id, latest[key] + 1, state)
                since[key] = 0


class WriteStage:
    """The projections' pending changes of one write transaction: all become current at
    :meth:`commit`, or none does."""

    __slots__ = ("_announced", "_inline", "_stages", "_touched")

    def __init__(self, inline: InlineProjections) -> None:
        self._inline = inline
        self._stages: dict[int, ProjectionStage] = {}
        # Allocated only when needed: a stage is built for every append.
        self._touched: list[tuple[int, Event, int]] | None = None
        self._announced: list[Event] | None = None

    def apply(self, event: Event, offset: int) -> None:
        """Fold ``event`` (to be committed at ``offset``) into every projection it routes
        to; :class:`~chanlog.errors.InvalidTransition` when one refuses it."""
        # Runs for every appended event: locals, and the route looked up inline.
        inline = self._inline
        stages = self._stages
        cls = type(event)
        route = inline._routes.get(cls)
        if route is None:
            route = inline.route(cls)
        for position in route:
            stage = stages.get(position)
            if stage is None:
                stage = stages[position] = inline._list[position].stage()
            try:
                stage.apply(event, offset)
            except ChanlogError:
                raise
            except Exception as exc:  # a bug in the projection, not a refusal
                raise inline.failed(position, event, offset, exc) from exc
        watched = inline._watched
        if watched:
            if self._touched is None:
                self._touched = []
            self._touched.extend((p, event, offset) for p in route if p in watched)
        if cls is SnapshotCreated:
            if self._announced is None:
                self._announced = []
            self._announced.append(event)

    def commit(self) -> None:
        """Make every pending change current (call once the backend committed)."""
        for stage in self._stages.values():
            stage.commit()
        inline = self._inline
        if self._announced is not None:
            for event in self._announced:
                inline.note(event)
        if self._touched is not None:
            inline._after_commit(self._touched)
