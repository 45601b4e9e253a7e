"""The event store: validated, idempotent, atomic appends; streamed reads; notifications."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from chanlog import codec
from chanlog.backends.base import Backend, WriteTransaction
from chanlog.backends.memory import MemoryBackend
from chanlog.checkpoints import DEFAULT_EVERY, EntityCheckpoints
from chanlog.errors import (
    ChanlogError,
    ConcurrencyError,
    DecodeError,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    NotFound,
)
from chanlog.events.base import Event
from chanlog.fastdecode import Mismatch, trusted_decoder
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next, keccak256
from chanlog.plugins.host import PluginHost, default_host
from chanlog.projections.base import Projection, ProjectionStage
from chanlog.projections.entity import EntityProjection
from chanlog.reconstruct import StateReconstructor
from chanlog.records import RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.serializers import Serializer
from chanlog.signals import event_appended, store_closing, store_opened
from chanlog.snapshots.manager import SnapshotManager
from chanlog.snapshots.policies import SnapshotPolicy
from chanlog.subscriptions import Subscription

__all__ = ["EventStore"]

logger = logging.getLogger("chanlog.store")

_Encoded = tuple[Event, bytes, bytes]
_Staged = tuple[list[int], list[StoredRecord], list[Event], list[ProjectionStage]]


class EventStore:
    """An append-only, tamper-evident event log with inline projections.

    Args:
        backend: where records live; a new :class:`~chanlog.backends.memory.MemoryBackend`
            when omitted.
        plugins: the plugin host providing event types, projections and serializers; the
            process-wide :func:`~chanlog.plugins.default_host` when omitted.
        serializer: a serializer name or instance for payloads at rest (default ``"json"``).
        projections: names of the projections to fold inline (default: every registered one).
            ``[]`` disables validation of transitions.
        snapshot_policy: a snapshot policy name (``"every-n-events"``, ``"never"``, or a
            plugin's) or instance; asked after every commit whether to snapshot. Default
            ``"never"``: snapshots are then taken only by :meth:`snapshot`.
        checkpoint_every: keep an in-memory checkpoint of an entity every this many of its
            events (default 32; ``0`` keeps none), so :meth:`reconstruct` at any offset folds
            at most that many events past the nearest one (see
            :class:`~chanlog.checkpoints.EntityCheckpoints`).

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
        checkpoint_every: int = DEFAULT_EVERY,
    ) -> None:
        self._checkpoints = EntityCheckpoints(checkpoint_every)
        self._host = plugins or default_host()
        self._backend: Backend = backend if backend is not None else MemoryBackend()
        self._serializer = self._resolve_serializer(serializer)
        # Canonical JSON at rest parses with orjson directly; the hot read path skips a call.
        self._loads: Callable[[bytes], Any] = (
            orjson.loads if self._serializer.canonical else self._serializer.loads
        )
        self._types = self._host.event_types
        self._types_generation = self._host.generation
        names = list(self._host.projections) if projections is None else list(projections)
        self._projections: dict[str, Projection] = {
            name: self._host.lookup("projections", name)() for name in names
        }
        self._routes: dict[type[Event], tuple[int, ...]] = {}
        self._wire_checkpoints()
        self._lock = threading.RLock()
        self._known = 0
        self._outbox: deque[RecordedEvent] = deque()
        self._delivering = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._watcher: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Event()
        self._snapshot_policy = self._resolve_snapshot_policy(snapshot_policy)
        self._snapshots = SnapshotManager(self)
        self._reconstructor = StateReconstructor(self)
        self._last_snapshot_offset: int | None = None
        self._snapshotting = False
        with self._lock:
            self._bootstrap()
        self._host.hook.chanlog_store_opened(store=self)
        store_opened.send(self)

    # -- configuration -------------------------------------------------------------------

    def _resolve_serializer(self, serializer: Serializer | str | None) -> Serializer:
        if serializer is None:
            serializer = "json"
        if isinstance(serializer, str):
            instance: Serializer = self._host.lookup("serializers", serializer)()
            return instance
        return serializer

    def _resolve_snapshot_policy(self, policy: SnapshotPolicy | str | None) -> SnapshotPolicy:
        if policy is None:
            policy = "never"
        if isinstance(policy, str):
            instance: SnapshotPolicy = self._host.lookup("snapshot_policies", policy)()
            return instance
        if not callable(getattr(policy, "should_snapshot", None)):
            raise InvalidArgument(
                f"snapshot_policy must be a policy name or have should_snapshot(), got {policy!r}"
            )
        return policy

    @property
    def snapshot_policy(self) -> SnapshotPolicy:
        """The policy asked after every commit whether to snapshot."""
        return self._snapshot_policy

    @property
    def snapshots(self) -> SnapshotManager:
        """The store's :class:`~chanlog.snapshots.SnapshotManager`."""
        return self._snapshots

    @property
    def reconstructor(self) -> StateReconstructor:
        """The store's :class:`~chanlog.reconstruct.StateReconstructor`."""
        return self._reconstructor

    @property
    def backend(self) -> Backend:
        """The storage backend."""
        return self._backend

    @property
    def serializer(self) -> Serializer:
        """The payload serializer."""
        return self._serializer

    @property
    def plugins(self) -> PluginHost:
        """The plugin host this store resolves names with."""
        return self._host

    @property
    def projections(self) -> Mapping[str, Projection]:
        """The inline projections, by name."""
        return dict(self._projections)

    def projection(self, name: str) -> Projection:
        """One inline projection; :class:`NotFound` when it is not enabled."""
        try:
            return self._projections[name]
        except KeyError:
            enabled = ", ".join(sorted(self._projections)) or "none"
            raise NotFound(f"projection {name!r} is not enabled (enabled: {enabled})") from None

    # -- opening -------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        """Fold what the backend already holds, so the projections describe the log: load
        the newest snapshot whose schema versions match the projections (one that does not
        is ignored), then fold only the tail after it."""
        length = self._backend.head().length
        # Restoring reads the snapshot blob once; only when nothing usable was restored is
        # the newest snapshot looked up again, for the policy's sake.
        restored = self._snapshots.restore(length) if self._projections else None
        if restored is not None:
            self._projections, self._known = restored
            self._routes.clear()
            self._wire_checkpoints()
            self._last_snapshot_offset = restored[1]
        else:
            latest = self._backend.latest_snapshot(length)
            self._last_snapshot_offset = None if latest is None else latest.offset
        self._fold_committed(length, notify=False)

    def _wire_checkpoints(self) -> None:
        """Let the inline projections that can leave checkpoints leave them here."""
        sink = self._checkpoints if self._checkpoints.enabled else None
        for projection in self._projections.values():
            if isinstance(projection, EntityProjection):
                projection.checkpoints = sink

    @property
    def checkpoints(self) -> EntityCheckpoints:
        """The in-memory entity checkpoints reconstruction starts from (ADR 0020)."""
        return self._checkpoints

    def _fold_committed(self, end: int, *, notify: bool) -> None:
        """Fold records ``[known, end)`` written by someone else (another process, or an
        earlier run) into the projections; deliver them when ``notify``."""
        start = self._known
        if end <= start:
            return
        if not self._projections and not (notify and event_appended.receivers):
            self._known = end  # nobody needs these records decoded
            return
        projections = list(self._projections.values())
        for stored in self._backend.read(start, end):
            try:
                record = self._decode(stored)
            except DecodeError as exc:
                if exc.event_type not in self._types:
                    raise  # a plugin is missing, the log is fine
                raise IntegrityError(
                    f"offset {stored.offset}: the stored record does not decode ({exc}); "
                    "the log was changed outside chanlog",
                    offset=stored.offset,
                ) from exc
            for position in self._route(type(record.event)):
                stage = projections[position].stage()
                stage.apply(record.event, record.offset)
                stage.commit()
            self._known = record.offset + 1
            if notify:
                self._outbox.append(record)

    def _route(self, event_class: type[Event]) -> tuple[int, ...]:
        """Positions of the projections that react to ``event_class``: a projection may
        declare ``event_types`` (``None``, the default, means every event), so an event skips
        the projections that would ignore it anyway."""
        route = self._routes.get(event_class)
        if route is None:
            route = tuple(
                position
                for position, projection in enumerate(self._projections.values())
                if (kinds := getattr(projection, "event_types", None)) is None
                or event_class in kinds
            )
            self._routes[event_class] = route
        return route

    # -- appending -----------------------------------------------------------------------

    def append(
        self, event: Event | Mapping[str, Any], *, expected_version: int | None = None
    ) -> int:
        """Append one event (or a ``{"type", "payload"}`` envelope); return its offset.

        Re-appending an event whose id is already in the log returns the existing offset,
        writes nothing and notifies no one.

        Args:
            expected_version: when given, the number of events the event's primary stream
                must hold before this append (0: the entity must be new).

        Raises:
            InvalidEvent: not a registered event type.
            InvalidTransition: the projections refuse it (nothing is written).
            ConcurrencyError: ``expected_version`` does not match (nothing is written).
            StorageError: the backend failed (nothing is written).
        """
        expected: dict[str, int] | None = None
        if expected_version is not None:
            expected = {self._primary_stream(event): expected_version}
        return self._append([event], expected, batch=False)[0]

    def append_batch(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        *,
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[int]:
        """Append events atomically: all are committed, in order, or none is.

        Items may be events or ``{"type", "payload"}`` envelopes (decoded strictly).

        Args:
            expected_versions: entity id → number of events its stream must hold before the
                batch.

        Raises:
            InvalidEvent, InvalidTransition: naming the index of the first failing event.
            ConcurrencyError: a stream's version does not match.
        """
        events = list(events)
        expected = None
        if expected_versions:
            expected = {stream.lower(): version for stream, version in expected_versions.items()}
        return self._append(events, expected, batch=True)

    def _primary_stream(self, item: Event | Mapping[str, Any]) -> str:
        event = self._as_event(item, 0, batch=False)
        streams = event.streams
        if not streams:
            raise InvalidEvent(
                f"{event.event_type} belongs to no entity stream; expected_version cannot apply",
                event_type=event.event_type,
                rule="expected_version needs an entity stream",
            )
        return streams[0]

    def _as_event(self, item: object, index: int, *, batch: bool) -> Event:
        """Accept an event, or a ``{"type", "payload"}`` envelope decoded strictly; refuse
        anything else or an event type this store's plugins did not register."""
        # Events first: the common case, and a plain class check is ten times cheaper than
        # the Mapping ABC's.
        if isinstance(item, Event):
            if self._types_generation != self._host.generation:
                self._refresh_types()
            if self._types.get(item.event_type) is type(item):
                return item
            raise InvalidEvent(
                f"{self._where(index, batch)}event type {item.event_type!r} "
                f"({type(item).__name__}) is not registered with this store's plugins",
                event_type=item.event_type,
                index=index if batch else None,
                rule="event type must be registered",
            )
        if isinstance(item, Mapping):
            try:
                return codec.decode_envelope(item, self._host.event_types)
            except DecodeError as exc:
                raise InvalidEvent(
                    f"{self._where(index, batch)}{exc}",
                    event_type=exc.event_type,
                    field=exc.path,
                    rule="payload must decode",
                    index=index if batch else None,
                ) from exc
        raise InvalidEvent(
            f"{self._where(index, batch)}expected a chanlog Event or an envelope, "
            f"got {type(item).__name__}",
            index=index if batch else None,
            rule="must be a chanlog.Event",
        )

    @staticmethod
    def _where(index: int, batch: bool) -> str:
        return f"batch[{index}]: " if batch else ""

    def _refresh_types(self) -> None:
        """Pick up event types plugins added or removed since this store last looked."""
        self._types_generation = self._host.generation
        self._types = self._host.event_types

    def _encode(self, items: Sequence[object], *, batch: bool) -> list[_Encoded]:
        encoded: list[_Encoded] = []
        for index, item in enumerate(items):
            event = self._as_event(item, index, batch=batch)
            canonical, _, raw_id = codec.encode_event_raw(event)
            encoded.append((event, canonical, raw_id))
        return encoded

    def _append(
        self, events: list[Any], expected: dict[str, int] | None, *, batch: bool
    ) -> list[int]:
        if self._closed:
            raise ChanlogError("the store is closed")
        if not events:
            return []
        encoded = self._encode(events, batch=batch)
        with self._lock:
            with self._backend.write() as transaction:
                head = transaction.head
                if head.length != self._known:
                    self._fold_committed(head.length, notify=True)
                offsets, new_records, new_events, stages = self._write(
                    transaction, encoded, expected, batch
                )
            # Committed: only now do the projections and subscribers learn of it.
            for stage in stages:
                stage.commit()
            if new_records:
                self._known = new_records[-1].offset + 1
                # Checked after _known moved: subscribe() reads _known and connects under
                # this same lock, so a new subscriber either sees the record in the log or
                # is connected by now.
                if event_appended.receivers:
                    outbox = self._outbox
                    for record, event in zip(new_records, new_events, strict=True):
                        outbox.append(
                            RecordedEvent(
                                record.offset, event.event_id, event, "0x" + record.chain_hash.hex()
                            )
                        )
        if self._outbox:
            self._deliver()
        if new_records and not self._snapshotting:
            self._maybe_snapshot()
        return offsets

    # -- snapshots and reconstruction ----------------------------------------------------

    def _maybe_snapshot(self) -> None:
        """Ask the policy after a commit; a failed automatic snapshot is logged, never
        raised: the append it follows has succeeded, and a snapshot is only an
        optimisation."""
        policy = self._snapshot_policy
        if not policy.should_snapshot(
            length=self._known, last_snapshot_offset=self._last_snapshot_offset
        ):
            return
        with self._lock:
            if self._closed or not policy.should_snapshot(
                length=self._known, last_snapshot_offset=self._last_snapshot_offset
            ):
                return  # another thread took it meanwhile
            try:
                self._snapshots.create_snapshot()
            except ChanlogError:
                logger.exception("automatic snapshot at offset %d failed", self._known)

    def _append_snapshot_event(self, event: Event) -> None:
        """Append ``snapshot-created`` without asking the policy again."""
        self._snapshotting = True
        try:
            self._append([event], None, batch=False)
        finally:
            self._snapshotting = False

    def snapshot(self, offset: int | None = None) -> StoredSnapshot:
        """Snapshot the projection states as of ``offset`` (default: the end of the log) and
        append ``snapshot-created``; see :meth:`SnapshotManager.create_snapshot`."""
        return self._snapshots.create_snapshot(offset)

    def reconstruct(self, kind: str, entity_id: str, at: int | None = None) -> Any:
        """The state of one entity after its events at offsets ``< at`` (default: the whole
        log), from its nearest snapshot plus its own events since; :class:`NotFound` when
        it does not exist by then. See :class:`~chanlog.reconstruct.StateReconstructor`."""
        return self._reconstructor.reconstruct(kind, entity_id, at)

    def state(self, kind: str, entity_id: str) -> Any:
        """The current state of one entity from the inline projection ``kind`` (O(1)).

        Raises:
            NotFound: the projection is not enabled, or the entity does not exist.
        """
        if type(entity_id) is not str:
            raise InvalidArgument(f"entity_id must be a string, got {type(entity_id).__name__}")
        found = self.projection(kind).get(entity_id.lower())
        if found is None:
            raise NotFound(f"no {kind} {entity_id}")
        return found

    @staticmethod
    def _find_existing(
        transaction: WriteTransaction, encoded: list[_Encoded]
    ) -> list[int | None] | None:
        """Offsets of the events already in the log, or ``None`` when none of them is (the
        common case, which then costs no list at all for a single event)."""
        if len(encoded) == 1:
            found = transaction.find(encoded[0][2])
            return None if found is None else [found]
        raw_ids = [item[2] for item in encoded]
        find_many = getattr(transaction, "find_many", None)
        existing: list[int | None] = (
            find_many(raw_ids)
            if find_many is not None
            else [transaction.find(raw_id) for raw_id in raw_ids]
        )
        return existing

    def _write(
        self,
        transaction: WriteTransaction,
        encoded: list[_Encoded],
        expected: dict[str, int] | None,
        batch: bool,
    ) -> _Staged:
        """Check, stage and write ``encoded`` inside the write transaction: idempotency,
        expected versions, projections. Returns every event's offset, the new records with
        their events, and the projection stages to commit once the backend has.

        A transaction with ``append_unless_known`` is written optimistically (ADR 0022): the
        events are staged as if none were in the log yet, and the backend's unique index on
        event ids is the judge. Only when it finds a known id, or when staging refuses (a
        re-appended event may well fail its transition or expected version the second
        time), are the ids looked up and everything staged again, exactly.
        """
        append_unless_known = getattr(transaction, "append_unless_known", None)
        if append_unless_known is not None:
            try:
                staged = self._stage(transaction, encoded, expected, batch, None)
            except (InvalidTransition, ConcurrencyError):
                pass  # decided below, knowing which events are already in the log
            else:
                if append_unless_known(staged[1]):
                    return staged
        existing = self._find_existing(transaction, encoded)
        if existing is not None and None not in existing:
            return [offset for offset in existing if offset is not None], [], [], []
        staged = self._stage(transaction, encoded, expected, batch, existing)
        transaction.append(staged[1])  # not empty: some event was not in the log
        return staged

    def _stage(
        self,
        transaction: WriteTransaction,
        encoded: list[_Encoded],
        expected: dict[str, int] | None,
        batch: bool,
        existing: list[int | None] | None,
    ) -> _Staged:
        """Stage ``encoded``, skipping the events at the offsets ``existing`` names
        (``None``: none is in the log): check expected versions, fold the projections'
        stages, chain the new records."""
        head = transaction.head
        offsets: list[int] = []
        new_records: list[StoredRecord] = []
        new_events: list[Event] = []
        if expected:
            for stream, version in expected.items():
                actual = transaction.stream_version(stream)
                if actual != version:
                    raise ConcurrencyError(
                        f"stream {stream} is at version {actual}, expected {version}",
                        stream=stream,
                        expected=version,
                        actual=actual,
                    )
        projections = list(self._projections.values())
        staged: dict[int, ProjectionStage] = {}
        serializer = self._serializer
        in_batch: dict[bytes, int] = {}
        offset = head.length
        chain = head.chain_hash
        for index, (event, canonical, raw_id) in enumerate(encoded):
            known = None if existing is None else existing[index]
            if known is None and in_batch:
                known = in_batch.get(raw_id)
            if known is not None:
                offsets.append(known)
                continue
            try:
                for position in self._route(type(event)):
                    stage = staged.get(position)
                    if stage is None:
                        stage = staged[position] = projections[position].stage()
                    stage.apply(event, offset)
            except InvalidTransition as exc:
                raise (exc.at_index(index) if batch else exc) from None
            chain = chain_next(chain, raw_id)
            payload = (
                canonical if serializer.canonical else serializer.dumps(codec.to_payload(event))
            )
            new_records.append(
                StoredRecord(offset, raw_id, event.event_type, event.streams, payload, chain)
            )
            new_events.append(event)
            in_batch[raw_id] = offset
            offsets.append(offset)
            offset += 1
        return offsets, new_records, new_events, list(staged.values())

    # -- notification --------------------------------------------------------------------

    def _deliver(self) -> None:
        """Drain the outbox in offset order. Whichever thread holds the delivery lock
        delivers everything queued, so records reach receivers in offset order even when
        many threads append; a callback that appends does not deadlock (its record is
        delivered by the loop already running)."""
        outbox = self._outbox
        while outbox:
            if not self._delivering.acquire(blocking=False):
                return
            try:
                # Resolved once per drain, not per record: subscribe() cannot connect while
                # we hold the delivery lock, and a subscription closed meanwhile skips itself.
                receivers = list(event_appended.receivers_for(self))
                while outbox:
                    self._notify(outbox.popleft(), receivers)
            finally:
                self._delivering.release()

    def _notify(self, record: RecordedEvent, receivers: list[Callable[..., Any]]) -> None:
        for receiver in receivers:
            try:
                receiver(self, record=record)
            except Exception:
                logger.exception(
                    "event-appended receiver %r failed on offset %d", receiver, record.offset
                )

    def subscribe(
        self,
        callback: Callable[[RecordedEvent], Any],
        from_offset: int | None = None,
        *,
        name: str | None = None,
    ) -> Subscription:
        """Deliver records to ``callback`` in offset order, each exactly once.

        With ``from_offset`` the subscription first catches up from the log, then goes live,
        with no gap and no duplicate even while other threads append. Without it, delivery
        starts with the next committed record. The callback is held strongly until the
        subscription is closed; one that raises is isolated (see :class:`Subscription`).
        """
        if from_offset is not None and (type(from_offset) is not int or from_offset < 0):
            raise InvalidArgument(f"from_offset must be a non-negative int, got {from_offset!r}")
        subscription = Subscription(self, callback, from_offset or 0, name)
        if from_offset is not None:
            # Most of the catch-up runs without blocking live delivery to others...
            subscription._catch_up(self._known)
        # ...and the last stretch under the delivery lock and the append lock, so no record
        # can be committed between reading the length and connecting.
        with self._delivering, self._lock:
            known = self._known
            if from_offset is None:
                subscription.next_offset = known
            else:
                subscription._catch_up(known)
            event_appended.connect(subscription, sender=self, weak=False)
            self._subscriptions.append(subscription)
        self._deliver()
        if self._backend.shared:
            self._start_watcher()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        event_appended.disconnect(subscription, sender=self)
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions."""
        return list(self._subscriptions)

    def refresh(self) -> int:
        """Fold and deliver records other processes appended to a shared backend; return
        the new length. A no-op for a backend only this store writes to."""
        with self._lock:
            self._fold_committed(self._backend.head().length, notify=True)
            known = self._known
        self._deliver()
        return known

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch, name="chanlog-watcher", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        while not self._closing.is_set():
            try:
                if self._backend.wait(self._known, 0.1):
                    self.refresh()
            except ChanlogError:
                if self._closing.is_set():
                    return
                logger.exception("watching the shared log failed; retrying")
                self._closing.wait(1.0)

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._backend.head().length if self._backend.shared else self._known

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self.read_from(0)

    def read_from(self, offset: int) -> Iterator[RecordedEvent]:
        """Records from ``offset`` to the end of the log (as long as it is when the iteration
        reaches it), streamed."""
        self._check_offset("offset", offset)
        return self._read(offset, None)

    def read_range(self, start: int, end: int) -> Iterator[RecordedEvent]:
        """Records with ``start <= offset < end``; ``end`` is clamped to the length, and the
        result is empty when ``start >= len(store)``.

        Raises:
            InvalidArgument: a negative bound, or ``start > end``.
        """
        self._check_offset("start", start)
        self._check_offset("end", end)
        if start > end:
            raise InvalidArgument(f"start ({start}) must not exceed end ({end})")
        return self._read(start, end)

    def _read(self, start: int, end: int | None) -> Iterator[RecordedEvent]:
        stop = len(self) if end is None else min(end, len(self))
        for stored in self._backend.read(start, stop):
            yield self._decode(stored)

    def read_stream(
        self, entity_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[RecordedEvent]:
        """The records of one entity (objective, channel or message), in offset order,
        optionally limited to offsets ``[start, end)``. Reads only that entity's records."""
        if type(entity_id) is not str:
            raise InvalidArgument(f"entity_id must be a string, got {type(entity_id).__name__}")
        self._check_offset("start", start)
        if end is not None:
            self._check_offset("end", end)
        for stored in self._backend.read_stream(entity_id.lower(), start, end):
            yield self._decode(stored)

    def stream_version(self, entity_id: str) -> int:
        """How many events the entity's stream holds (what ``expected_version`` compares)."""
        return self._backend.stream_version(entity_id.lower())

    def get(self, event_id: str) -> RecordedEvent:
        """The record with this event id; :class:`NotFound` when absent."""
        try:
            raw = bytes.fromhex(event_id.removeprefix("0x"))
        except (ValueError, AttributeError):
            raise InvalidArgument(f"not an event id: {event_id!r}") from None
        offset = self._backend.find(raw)
        if offset is None:
            raise NotFound(f"no event with id {event_id}")
        return next(self._read(offset, offset + 1))

    @staticmethod
    def _check_offset(name: str, value: int) -> None:
        if type(value) is not int or value < 0:
            raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")

    def _decode(self, stored: StoredRecord) -> RecordedEvent:
        event = self._decode_event(stored)
        return RecordedEvent(stored.offset, event.event_id, event, "0x" + stored.chain_hash.hex())

    def _decode_event(self, stored: StoredRecord) -> Event:
        """The event of a stored record, its id pre-filled from the record."""
        event = self._event_of(stored.offset, stored.event_type, stored.payload)
        # The id is known: spare the event from re-encoding itself to learn it.
        object.__setattr__(event, "event_id", "0x" + stored.event_id.hex())
        return event

    def _event_of(self, offset: int, event_type: str, payload: bytes) -> Event:
        """Decode one stored payload (fast, shape-checked decoder first; the strict one
        when the payload is anything but what the log writes). The event id is left to be
        computed on first use."""
        if self._types_generation != self._host.generation:
            self._refresh_types()
        cls = self._types.get(event_type)
        if cls is None:
            raise DecodeError(
                f"offset {offset}: event type {event_type!r} is not registered "
                "(is the plugin that defines it installed?)",
                event_type=event_type,
                offset=offset,
            )
        try:
            fields = self._loads(payload)
        except (DecodeError, ValueError) as exc:  # orjson's JSONDecodeError is a ValueError
            raise DecodeError(
                f"offset {offset}: stored payload does not parse: {exc}",
                event_type=event_type,
                offset=offset,
            ) from exc
        fast = trusted_decoder(cls)  # generated once per class, then a dict lookup
        if fast is not None and type(fields) is dict:
            try:
                return fast(fields)
            except Mismatch:
                pass
        return codec.from_payload(cls, fields, offset=offset)

    def stream_events(
        self, entity_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, Event]]:
        """Like :meth:`read_stream`, as ``(offset, event)`` pairs: the lean path that
        reconstruction folds over (an event's id is computed only if it is asked for)."""
        key = entity_id.lower()
        lean = getattr(self._backend, "read_stream_payloads", None)
        event_of = self._event_of
        if lean is None:
            for stored in self._backend.read_stream(key, start, end):
                yield stored.offset, event_of(stored.offset, stored.event_type, stored.payload)
            return
        for offset, event_type, payload in lean(key, start, end):
            yield offset, event_of(offset, event_type, payload)

    # -- integrity -----------------------------------------------------------------------

    def verify(self, progress: Callable[[int, int], Any] | None = None) -> int:
        """Recompute every event id from its stored payload and every chain hash; return the
        number of records checked.

        Args:
            progress: called as ``progress(done, total)`` every 1,000 records and at the end.

        Raises:
            IntegrityError: naming the first offset whose id, chain hash or position does
                not match (a log edited outside chanlog).
        """
        total = len(self)
        chain = GENESIS_CHAIN_HASH
        serializer = self._serializer
        expected_offset = 0
        for stored in self._backend.read(0, total):
            offset = expected_offset
            if stored.offset != offset:
                raise IntegrityError(
                    f"offset {offset}: record missing (next stored record is at {stored.offset})",
                    offset=offset,
                )
            if type(stored.payload) is not bytes:
                raise IntegrityError(
                    f"offset {offset}: payload is {type(stored.payload).__name__}, not bytes "
                    "(rewritten outside chanlog)",
                    offset=offset,
                )
            try:
                canonical = (
                    stored.payload
                    if serializer.canonical
                    else codec.canonical_json_of_payload(serializer.loads(stored.payload))
                )
            except DecodeError as exc:
                raise IntegrityError(
                    f"offset {offset}: payload unreadable: {exc}", offset=offset
                ) from exc
            computed = keccak256(b"ev1|" + stored.event_type.encode() + b"|" + canonical)
            if computed != stored.event_id:
                raise IntegrityError(
                    f"offset {offset}: event id does not match its payload "
                    f"(stored 0x{stored.event_id.hex()}, computed 0x{computed.hex()})",
                    offset=offset,
                )
            chain = chain_next(chain, computed)
            if chain != stored.chain_hash:
                raise IntegrityError(f"offset {offset}: chain hash does not match", offset=offset)
            expected_offset += 1
            if progress is not None and expected_offset % 1000 == 0:
                progress(expected_offset, total)
        if expected_offset != total:
            raise IntegrityError(
                f"offset {expected_offset}: log ends early ({expected_offset} of {total} records)",
                offset=expected_offset,
            )
        if progress is not None:
            progress(total, total)
        return total

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close subscriptions and the backend. Idempotent."""
        if self._closed:
            return
        self._host.hook.chanlog_store_closing(store=self)
        store_closing.send(self)
        self._closing.set()
        with self._lock:
            self._closed = True
            for subscription in list(self._subscriptions):
                subscription.close()
            watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)
        self._backend.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<EventStore backend={self._backend.name} closed>"
        return f"<EventStore backend={self._backend.name} length={len(self)}>"
