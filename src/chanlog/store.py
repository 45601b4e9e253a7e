"""The event store: a façade over the parts that do the work (ADR 0025), owning only the
append lock and the order of steps: nothing is folded or delivered before the backend has
committed. Appends go through :mod:`chanlog.appending`, folds through :mod:`chanlog.folding`,
hand-offs through :mod:`chanlog.delivery`; reads and verify are :mod:`chanlog.reading`'s."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from chanlog.appending import AppendPipeline, batch_items, expected_streams
from chanlog.backends.base import Backend
from chanlog.backends.capabilities import GroupsCommits
from chanlog.backends.memory import MemoryBackend
from chanlog.bus.brokers import Broker
from chanlog.bus.facade import Bus
from chanlog.checkpoints import DEFAULT_CHECKPOINT_EVERY, EntityCheckpoints
from chanlog.delivery import Delivery
from chanlog.errors import ChanlogError, StorageError
from chanlog.events.base import Event
from chanlog.exact_append import write_at
from chanlog.folding import InlineProjections, instantiate_projection, projection_names
from chanlog.lifecycle import closing, opened
from chanlog.plugins.host import PluginHost, default_host
from chanlog.projections.base import Projection
from chanlog.reading import EventDecoder, LogReader, check_offset
from chanlog.reconstruct import StateReconstructor
from chanlog.records import PositionMove, RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.serializer_record import check_serializer
from chanlog.serializers import Serializer, resolve_serializer
from chanlog.snapshots.manager import SnapshotManager
from chanlog.snapshots.policies import SnapshotPolicy, resolve_policy
from chanlog.snapshots.taking import SnapshotTaker
from chanlog.subscriptions import Subscription
from chanlog.writing import Writer

if TYPE_CHECKING:
    from chanlog.projections.channel import ChannelState
    from chanlog.projections.objective import ObjectiveState

__all__ = ["EventStore"]


class EventStore(LogReader):
    """An append-only, tamper-evident event log with inline projections.

    Args:
        backend: where records live; a new :class:`~chanlog.backends.memory.MemoryBackend`
            when omitted.
        plugins: the plugin host providing event types, projections and serializers; the
            process-wide :func:`~chanlog.plugins.default_host` when omitted.
        serializer: a serializer name or instance for payloads at rest (default ``"json"``).
        projections: names of the projections to fold inline (default: every registered one).
            ``[]`` disables validation of transitions (and folds nothing on open).
        snapshot_policy: a snapshot policy name (``"every-n-events"``, ``"never"``, or a
            plugin's) or instance; asked after every commit whether to snapshot, counting
            from the latest snapshot in the log (whichever process took it). Default
            ``"never"``: snapshots are then taken only by :meth:`snapshot`.
        checkpoint_every: keep an in-memory checkpoint of an entity every this many of its
            events (default 32; ``0``: none), so :meth:`reconstruct` at any offset folds at
            most that many events past the nearest one (ADR 0020).
        read_only: refuse appends and snapshots (the backend should be opened read-only too).
        broker: the bus broker live subscriptions go through: a registered name (default
            ``"embedded"``) or a :class:`~chanlog.bus.Broker`; ``broker_options`` go to its
            factory. ``bus_prefix`` is the first token(s) of this node's subjects (default
            ``"chanlog"``). See :attr:`bus`.

    The store is thread-safe. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        plugins: PluginHost | None = None,
        serializer: Serializer | str | None = None,
        projections: Iterable[str] | None = None,
        snapshot_policy: SnapshotPolicy | str | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        read_only: bool = False,
        broker: Broker | str | None = None,
        bus_prefix: str | None = None,
        broker_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._checkpoints = EntityCheckpoints(checkpoint_every)
        self._host = plugins or default_host()
        backend = backend if backend is not None else MemoryBackend()
        serializer = resolve_serializer(serializer, self._host.checked_lookup)
        super().__init__(backend, EventDecoder(self._host, serializer))
        check_serializer(backend, serializer, writable=not read_only)
        names = projection_names(self._host, projections)
        self._inline = InlineProjections(self._host, names, self._checkpoints)
        self._pipeline = AppendPipeline(self._decoder, self._inline)
        self._lock = threading.RLock()
        self._bus = Bus(self, broker=broker, prefix=bus_prefix, options=broker_options)
        self._delivery = Delivery(
            self, self, self._lock, lambda: self._inline.folded, self._bus.broker
        )
        self._writer = Writer(
            backend,
            self._inline,
            self._pipeline,
            self._delivery,
            self._decoder,
            self._lock,
            groups=isinstance(backend, GroupsCommits) and backend.groups_commits,
        )
        self._read_only = read_only
        self._closed = False
        self._snapshots = SnapshotManager(self)
        self._reconstructor = StateReconstructor(self)
        self._reconstructor.before_now = self._writer.see_others  # ADR 0060
        self._taker = SnapshotTaker(
            backend,
            self._inline,
            self._pipeline,
            self._snapshots,
            self.read_range,
            resolve_policy(snapshot_policy, self._host.checked_lookup),
            self._writer.run,
        )
        with self._lock:
            self._bootstrap()
        opened(self, self._writer, self._pipeline, self._taker, self._reconstructor, self._release)

    @property
    def snapshot_policy(self) -> SnapshotPolicy:
        """The policy asked after every commit whether to snapshot."""
        return self._taker.policy

    @property
    def bus(self) -> Bus:
        """The store's :class:`~chanlog.bus.Bus`: subjects, broker, durable consumers."""
        return self._bus

    @property
    def snapshots(self) -> SnapshotManager:
        """The store's :class:`~chanlog.snapshots.SnapshotManager`."""
        return self._snapshots

    @property
    def reconstructor(self) -> StateReconstructor:
        """The store's :class:`~chanlog.reconstruct.StateReconstructor`."""
        return self._reconstructor

    @property
    def checkpoints(self) -> EntityCheckpoints:
        """The in-memory entity checkpoints reconstruction starts from (ADR 0020)."""
        return self._checkpoints

    @property
    def read_only(self) -> bool:
        """True when the store refuses appends and snapshots."""
        return self._read_only

    @property
    def projections(self) -> Mapping[str, Projection]:
        """The inline projections, by name."""
        return dict(self._inline.by_name)

    def projection(self, name: str) -> Projection:
        """One inline projection; :class:`NotFound` when it is not enabled."""
        return self._inline.get(name)

    def inline_projection(self, name: str) -> Projection | None:
        """The projection ``name`` if this store folds it inline, else ``None``."""
        return self._inline.find(name)

    def projection_versions(self) -> dict[str, int]:
        """Name → schema version of the inline projections."""
        return self._inline.versions()

    def fresh_projection(self, name: str) -> Projection:
        """A new, empty instance of the registered projection ``name``."""
        return instantiate_projection(self._host, name)

    def _bootstrap(self) -> None:
        """Fold what the backend already holds: from the newest snapshot whose schema
        versions match the projections (others are ignored), then the tail after it."""
        self._writer.restore = self._snapshots.restore
        self._writer.on_rewind = self._taker.rewound
        self._writer.refold(self._backend.head())

    def refresh(self) -> int:
        """Fold and deliver records other processes appended to a shared backend, or fold
        the log again when it lost records this store folded (ADR 0043); return the new
        length. A no-op for a backend only this store writes to."""
        with self._lock:
            self._writer.align(self._backend.head())
            known = self._inline.folded
        self._delivery.deliver()
        return known

    def __len__(self) -> int:
        return self._backend.head().length if self._backend.shared else self._inline.folded

    def append(
        self, event: Event | Mapping[str, Any], *, expected_version: int | None = None
    ) -> int:
        """Append one event (or a ``{"type", "payload"}`` envelope); return its offset.

        Re-appending an event whose id is already in the log returns the existing offset,
        writes nothing and notifies no one.

        Args:
            expected_version: when given, the number of events the event's primary stream
                must hold before this append (0: new): an int >= 0, else InvalidArgument.

        Raises:
            InvalidEvent: not a registered event type.
            InvalidTransition: the projections refuse it (nothing is written).
            ConcurrencyError: ``expected_version`` does not match (nothing is written).
            StorageError: the backend failed (nothing is written).
        """
        if self._closed or self._read_only:
            self._writable()
        expected: dict[str, int] | None = None
        if expected_version is not None:
            check_offset("expected_version", expected_version)
            expected = {self._pipeline.primary_stream(event): expected_version}
        pipeline = self._pipeline
        encoded = pipeline.encode((event,), batch=False)
        if self._writer.groups:
            result = self._writer.append(encoded, expected, False)
        else:
            result = self._writer.run(pipeline.write, encoded, expected, False)
        if result.records and self._inline.folded >= self._taker.ask_from:
            self._taker.maybe_take()
        return result.offsets[0]

    def append_batch(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        expected_versions: Mapping[str, int] | None = None,
        consumer_move: PositionMove | None = None,
    ) -> list[int]:
        """Append events atomically: all are committed, in order, or none is.

        Items may be events or ``{"type", "payload"}`` envelopes (decoded strictly).

        Args:
            expected_versions: entity id → events its stream must hold before it (ints >= 0).
            consumer_move: a durable consumer's move committed with the events (what a
                runner passes for a handler that returned events; see
                :meth:`chanlog.bus.Bus.mover`).

        Raises:
            InvalidArgument: ``events`` is not a sequence, or a bad ``expected_versions``.
            InvalidEvent, InvalidTransition: naming the index of the first failing event.
            ConcurrencyError: a stream's version does not match.
        """
        if self._closed or self._read_only:
            self._writable()
        events = batch_items(events)
        if not events and consumer_move is None:
            return []
        expected = expected_streams(expected_versions)
        pipeline = self._pipeline
        encoded = pipeline.encode(events, batch=True)
        if consumer_move is None:
            if self._writer.groups:
                result = self._writer.append(encoded, expected, True)
            else:
                result = self._writer.run(pipeline.write, encoded, expected, True)
        else:
            mover = self._bus.mover(consumer_move)
            result = self._writer.run(mover.wrap(pipeline.write), encoded, expected, True)
            mover.finish()
        if result.records and self._inline.folded >= self._taker.ask_from:
            self._taker.maybe_take()
        return result.offsets

    def _writable(self) -> None:
        if self._closed:
            raise ChanlogError("the store is closed")
        if self._read_only:
            raise StorageError("the store was opened read-only")

    def decode(self, stored: StoredRecord) -> RecordedEvent:
        """The record a backend returned, decoded (its event id taken from it)."""
        return self._decoder.record(stored)

    def append_at(
        self, offset: int, events: Sequence[Event], snapshot: StoredSnapshot | None = None
    ) -> list[int]:
        """Append ``events``, and the ``snapshot`` the first announces, atomically at ``offset``,
        ``offset + 1``, ... or nothing (ConcurrencyError); no automatic snapshot (ADR 0032)."""
        self._writable()
        work = write_at(self._pipeline, offset, snapshot, self._backend)
        encoded = self._pipeline.encode(list(events), batch=True)
        return self._writer.run(work, encoded, None, True).offsets

    def snapshot(self, offset: int | None = None) -> StoredSnapshot:
        """Snapshot the projection states as of ``offset`` (default: the end of the log),
        store it and append ``snapshot-created``, in one write transaction.

        Raises:
            InvalidArgument: ``offset`` is negative or beyond the end of the log.
            StorageError: the backend could not store it.
        """
        self._writable()
        if offset is not None:
            check_offset("offset", offset)
        taken = self._taker.take(offset, automatic=False)
        assert taken is not None  # only an automatic snapshot may decide not to
        return taken

    def prune_snapshots(self, keep: int | None = None) -> list[int]:
        """Delete the stored snapshots the snapshot policy does not retain (with ``keep``:
        all but the latest ``keep`` and thinned older ones; an int >= 0, else
        :class:`InvalidArgument`); return their offsets. A no-op where the backend cannot
        delete snapshots (ADR 0030)."""
        self._writable()
        return self._taker.prune(keep)

    def reconstruct(self, kind: str, entity_id: str, at: int | None = None) -> Any:
        """The state of one entity after its events at offsets ``< at`` (default: the whole
        log); :class:`NotFound` when it does not exist by then, :class:`InvalidArgument` for
        a bad argument. See :class:`~chanlog.reconstruct.StateReconstructor`; "now" on a
        shared backend includes what other processes appended (ADR 0060)."""
        return self._reconstructor.reconstruct(kind, entity_id, at)

    def reconstruct_objective(self, objective_id: str, at: int | None = None) -> ObjectiveState:
        """:meth:`reconstruct` of an objective."""
        return cast("ObjectiveState", self.reconstruct("objective", objective_id, at))

    def reconstruct_channel(self, channel_id: str, at: int | None = None) -> ChannelState:
        """:meth:`reconstruct` of a channel."""
        return cast("ChannelState", self.reconstruct("channel", channel_id, at))

    def state(self, kind: str, entity_id: str) -> Any:
        """The current state of one entity from the inline projection ``kind`` (O(1); on a
        shared backend after folding what other processes appended, ADR 0060).

        Raises:
            InvalidArgument: ``kind`` or ``entity_id`` refused as :meth:`reconstruct` does.
            NotFound: the projection is not enabled, or the entity does not exist.
        """
        name = self._reconstructor.resolve_kind(kind)
        return self._reconstructor.now(self.projection(name), kind, entity_id)

    def subscribe(
        self,
        callback: Callable[[RecordedEvent], Any],
        from_offset: int | None = None,
        *,
        name: str | None = None,
        subjects: str | Iterable[str] | None = None,
    ) -> Subscription:
        """Deliver records to ``callback`` in offset order, each exactly once: every
        record, or those whose subject matches a pattern of ``subjects`` (see
        :mod:`chanlog.bus.subjects`), live through the store's broker.

        With ``from_offset`` the subscription first catches up from the log, then goes live,
        with no gap and no duplicate even while other threads append. Without it, delivery
        starts with the next committed record. The callback is held strongly until the
        subscription is closed; one that raises is isolated (see :class:`Subscription`).
        """
        if from_offset is not None:
            check_offset("from_offset", from_offset)
        patterns = None if subjects is None else self._bus.subject_filter(subjects)
        subscription = self._delivery.subscribe(callback, from_offset, name, patterns)
        if self._backend.shared:
            self._delivery.watch(self._backend, self.refresh)
        return subscription

    @property
    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions."""
        return self._delivery.subscriptions

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close subscriptions and the backend, whatever the closing hooks raise. Idempotent."""
        if not self._closed:
            closing(self, self._release)

    def _release(self) -> None:
        with self._lock:
            self._closed = self._writer.closed = True
        for part in (self._delivery, self._bus, self._backend):
            part.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<EventStore backend={self._backend.name} closed>"
        return f"<EventStore backend={self._backend.name} length={len(self)}>"
