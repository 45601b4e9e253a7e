"""The :class:`SnapshotManager`: finds and reads the snapshots of one store.

A snapshot is an optimisation, never a source of truth: one whose schema versions differ
from the projections in use, or whose bytes do not match its hash, is skipped and the
store (or the reconstructor) replays instead.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

from chanlog.backends.base import Backend
from chanlog.errors import DecodeError, InvalidArgument, StorageError
from chanlog.events.system import SnapshotCreated
from chanlog.projections.base import DefersStateLoading, Projection, SnapshotsPerEntity
from chanlog.records import RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.snapshots.codec import base_reference
from chanlog.snapshots.view import SnapshotView, open_snapshot

__all__ = ["SnapshotManager", "SnapshotSource", "stored_snapshot"]

logger = logging.getLogger("chanlog.snapshots")

_VIEW_CACHE_SIZE = 4
"""Opened snapshots kept (each verified once: its hash covers every byte). The view of an
incremental snapshot holds its base's, however many are cached."""
_STATE_CACHE_SIZE = 1024
"""Entity states read out of snapshots kept for reconstruction (states are immutable)."""
_REFUSED_CACHE_SIZE = 4
"""Snapshots refused for their own bytes kept (with those bytes), so that each read after
it costs a comparison of bytes instead of their hash."""
_ABSENT = object()


class SnapshotSource(Protocol):
    """What snapshots are read for: a log and the projections folded over it (a store)."""

    @property
    def backend(self) -> Backend:
        """Where snapshots are stored."""
        ...

    def projection_versions(self) -> Mapping[str, int]:
        """Name → schema version of the projections a restore must match."""
        ...

    def fresh_projection(self, name: str) -> Projection:
        """A new, empty instance of the projection ``name``."""
        ...

    def read_range(self, start: int, end: int) -> Iterator[RecordedEvent]:
        """Records with ``start <= offset < end``."""
        ...

    def decode(self, stored: StoredRecord) -> RecordedEvent:
        """A record as the backend stores it, decoded."""
        ...


def stored_snapshot(backend: Backend, before: int | None = None) -> StoredSnapshot | None:
    """``backend.latest_snapshot(before)``, where a row the backend cannot read (its versions
    changed outside chanlog) is a snapshot that does not say what it claims.

    Raises:
        DecodeError: that row's, naming its ``offset``: skip it as a snapshot whose bytes
            do not match its hash.
        StorageError: the backend failed otherwise.
    """
    try:
        return backend.latest_snapshot(before)
    except StorageError as exc:
        if exc.snapshot_offset is None:
            raise
        raise DecodeError(str(exc), path="versions", offset=exc.snapshot_offset) from exc


class SnapshotManager:
    """Snapshots of one store's projections.

    ``latest_snapshot(before_offset)`` finds the newest usable one; ``restore`` and
    ``projections_at`` build projections from one. Reached as ``store.snapshots``
    (snapshots are taken by :meth:`chanlog.EventStore.snapshot`).

    Reading is cached at two levels, both bounded LRUs: an opened snapshot (hash verified,
    header parsed) is kept, so the next reconstruction from it does not hash its bytes
    again; and each entity state read out of one is kept, so a reconstruction at another
    offset past the same snapshot parses nothing at all.
    """

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source
        self._views: OrderedDict[tuple[int, bytes], SnapshotView] = OrderedDict()
        self._states: OrderedDict[tuple[int, bytes, str, str], Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._refused: OrderedDict[tuple[int, bytes], tuple[bytes, str]] = OrderedDict()
        self._reported: set[tuple[int, bytes]] = set()  # refusals logged as warnings
        self._announced: set[tuple[int, bytes]] = set()
        self._unannounced: dict[tuple[int, bytes], int] = {}  # → the log's length searched
        self.opened_count = 0
        """How many snapshots were opened (verified and parsed; a cache miss each)."""
        self.state_loads = 0
        """How many entity states were parsed out of snapshots (a cache miss each)."""

    # -- finding -------------------------------------------------------------------------

    def candidates(
        self, before_offset: int | None, versions: Mapping[str, int]
    ) -> Iterator[StoredSnapshot]:
        """Snapshots at offsets ``<= before_offset`` (any, when None), newest first, whose
        schema versions match ``versions`` (projection name → version)."""
        backend = self._source.backend
        before = before_offset
        while before is None or before >= 0:
            try:
                snapshot = stored_snapshot(backend, before)
            except DecodeError as exc:
                unreadable = cast(int, exc.offset)  # stored_snapshot names it
                self._ignoring(unreadable, b"", exc)
                before = unreadable - 1
                continue
            if snapshot is None:
                return
            if all(snapshot.versions.get(name) == version for name, version in versions.items()):
                yield snapshot
            else:
                logger.debug(
                    "snapshot at offset %d has versions %s, need %s: ignored",
                    snapshot.offset,
                    snapshot.versions,
                    dict(versions),
                )
            before = snapshot.offset - 1

    def latest_snapshot(self, before_offset: int | None = None) -> StoredSnapshot | None:
        """The newest snapshot at an offset ``<= before_offset`` (the whole log when None)
        whose schema versions match every projection of the store and whose bytes match
        its hash; ``None`` when there is none."""
        if before_offset is not None:
            _check_offset(before_offset, "before_offset")
        for snapshot in self.candidates(before_offset, self._source.projection_versions()):
            try:
                self.open(snapshot)
            except DecodeError as exc:
                self._ignoring(snapshot.offset, snapshot.snapshot_hash, exc)
                continue
            return snapshot
        return None

    def open(self, snapshot: StoredSnapshot) -> SnapshotView:
        """``snapshot`` verified and its header parsed (cached per offset and hash): its
        bytes match its hash, and the log announces that hash at its offset (ADR 0067).

        Raises:
            DecodeError: it does not say exactly what it claims (see
                :func:`~chanlog.snapshots.codec.open_snapshot`), or no ``snapshot-created``
                event of the log announces it (a row from another log, or one written
                outside chanlog).
        """
        view = self._opened(snapshot)
        key = (snapshot.offset, snapshot.snapshot_hash)
        if key not in self._announced:
            self._check_announced(key)
            link: SnapshotView | None = view
            with self._cache_lock:
                while link is not None:  # its bases are named by its announced bytes
                    self._announced.add((link.offset, link.snapshot_hash))
                    link = link.base
        return view

    def rewound(self) -> None:
        """The log lost records (ADR 0043): a snapshot found announced may be announced no
        longer, so each is looked for again, and no state read out of one is reused."""
        with self._cache_lock:
            self._announced.clear()
            self._unannounced.clear()
            self._states.clear()

    def _check_announced(self, key: tuple[int, bytes]) -> None:
        """Refuse a snapshot no ``snapshot-created`` event announces. The store announces
        one it takes of the end of the log by the record at the snapshot's offset, in the
        same transaction; one taken of an earlier offset (or again) is announced later, and
        the log from its offset is searched, each record once per snapshot. The row was read
        before the head is: its announcement, committed with it, is before that head."""
        offset = key[0]
        backend = self._source.backend
        searched = self._unannounced.get(key, offset)
        if searched == offset:  # where the store's own snapshots are announced
            first = list(backend.read(offset, offset + 1))
            if self._announces(iter(first), key):
                return
            # Not written yet where a backend stores the row just before the records (ADR
            # 0036): read again next time, not taken as searched.
            searched = offset + len(first)
        end = backend.head().length
        if searched < end and self._announces(backend.read(searched, end), key):
            return
        with self._cache_lock:
            self._unannounced[key] = max(searched, end)
        raise DecodeError(
            f"snapshot at offset {offset}: no snapshot-created event of the log announces "
            f"its hash 0x{key[1].hex()} (a row from another log, or written outside chanlog)",
            path="announcement",
        )

    def _announces(self, records: Iterator[StoredRecord], key: tuple[int, bytes]) -> bool:
        """Whether one of ``records`` is the ``snapshot-created`` event of ``key`` (offset,
        hash); remembered when it is."""
        announcement = SnapshotCreated.event_type
        for stored in records:
            if stored.event_type != announcement:
                continue
            event = self._source.decode(stored).event
            if (
                isinstance(event, SnapshotCreated)
                and event.snapshot_offset == key[0]
                and event.snapshot_hash == "0x" + key[1].hex()
            ):
                with self._cache_lock:
                    self._announced.add(key)
                    self._unannounced.pop(key, None)
                return True
        return False

    def _opened(self, snapshot: StoredSnapshot) -> SnapshotView:
        """``snapshot`` verified against its own hash and its base's, cached."""
        key = (snapshot.offset, snapshot.snapshot_hash)
        with self._cache_lock:
            cached = self._views.get(key)
            if cached is not None:
                self._views.move_to_end(key)
                return cached
        refused = self._refused.get(key)
        if refused is not None and refused[0] == snapshot.data:
            raise DecodeError(refused[1])  # the same bytes and hash: the same verdict
        base = self._base_view(snapshot)
        try:
            view = open_snapshot(snapshot, base)
        except DecodeError as exc:
            with self._cache_lock:
                self._refused[key] = (snapshot.data, str(exc))
                while len(self._refused) > _REFUSED_CACHE_SIZE:
                    self._refused.popitem(last=False)
            raise
        with self._cache_lock:
            self.opened_count += 1
            self._views[key] = view
            while len(self._views) > _VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return view

    def _base_view(self, snapshot: StoredSnapshot) -> SnapshotView | None:
        """The opened base of an incremental ``snapshot`` (``None`` for a whole one).

        Raises:
            DecodeError: the base is no longer stored, or another snapshot replaced it.
        """
        reference = base_reference(snapshot)
        if reference is None:
            return None
        base = stored_snapshot(self._source.backend, reference[0])
        if base is None or (base.offset, base.snapshot_hash) != reference:
            raise DecodeError(
                f"snapshot at offset {snapshot.offset}: incremental on the snapshot at offset "
                f"{reference[0]}, which is no longer stored as it was",
                path="base",
            )
        # Its hash is in the bytes of the snapshot taken on it, which the log announces.
        return self._opened(base)  # its offset is lower: the recursion ends

    def _ignoring(self, offset: int, snapshot_hash: bytes, exc: DecodeError) -> None:
        """Log that the snapshot at ``offset`` with ``snapshot_hash`` (empty: its row cannot
        be read) is skipped: a warning the first time, then at debug level (every
        reconstruction past a damaged snapshot skips it)."""
        key = (offset, snapshot_hash)
        with self._cache_lock:
            first = key not in self._reported
            self._reported.add(key)
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "ignoring snapshot at offset %d: %s", offset, exc)

    # -- reading states out of snapshots -------------------------------------------------

    def entity_state(
        self, projection: Projection, entity_id: str, at: int
    ) -> tuple[Any | None, int]:
        """The state of one entity in the newest usable snapshot at an offset ``<= at``,
        and that offset; ``(None, 0)`` when no snapshot helps (replay from the start).

        Only that entity's part of the snapshot is parsed, and only once per snapshot."""
        name = projection.name
        versions = {name: projection.schema_version}
        for snapshot in self.candidates(at, versions):
            key = (snapshot.offset, snapshot.snapshot_hash, name, entity_id)
            with self._cache_lock:
                state = self._states.get(key, _ABSENT)
                if state is not _ABSENT:
                    self._states.move_to_end(key)
                    return state, snapshot.offset
            try:
                state = self._read_entity(self.open(snapshot), projection, entity_id)
            except DecodeError as exc:
                self._ignoring(snapshot.offset, snapshot.snapshot_hash, exc)
                continue
            with self._cache_lock:
                self.state_loads += 1
                self._states[key] = state
                while len(self._states) > _STATE_CACHE_SIZE:
                    self._states.popitem(last=False)
            return state, snapshot.offset
        return None, 0

    def _read_entity(self, view: SnapshotView, projection: Projection, entity_id: str) -> Any:
        name = projection.name
        if view.is_indexed(name) and isinstance(projection, SnapshotsPerEntity):
            raw = view.raw_entity(name, entity_id)
            return None if raw is None else projection.load_state(raw)
        # Stored whole: load all of it into a private instance and ask that.
        whole = self._source.fresh_projection(name)
        if whole.schema_version != projection.schema_version:
            # A plugin replaced since the store opened: the instance registered now reads
            # another dump, and the store's own projection cannot be built afresh.
            raise DecodeError(
                f"{view.where}: projection {name!r} is registered at schema version "
                f"{whole.schema_version} now, this store folds version "
                f"{projection.schema_version}",
                path=f"projections.{name}",
            )
        whole.load(view.projection_data(name))
        return whole.get(entity_id)

    def restore(self, before_offset: int) -> tuple[dict[str, Projection], int] | None:
        """Fresh projections loaded from the newest usable snapshot at an offset
        ``<= before_offset``, and its offset; ``None`` when there is none.

        The snapshot must hold the versions of those fresh instances (the projections
        registered now), which are those the store folds inline unless a plugin was
        replaced since the store opened: their states are folded on from it."""
        first = self._fresh_projections()
        versions = {name: projection.schema_version for name, projection in first.items()}
        spare: dict[str, Projection] | None = first
        for snapshot in self.candidates(before_offset, versions):
            fresh = spare if spare is not None else self._fresh_projections()
            spare = None  # a failed load leaves them half loaded: the next attempt has its own
            try:
                view = self.open(snapshot)
                for name, projection in fresh.items():
                    deferred = isinstance(projection, DefersStateLoading)
                    projection.load(view.projection_data(name, deferred=deferred))
            except DecodeError as exc:
                self._ignoring(snapshot.offset, snapshot.snapshot_hash, exc)
                continue
            logger.debug("restored from the snapshot at offset %d", snapshot.offset)
            return fresh, snapshot.offset
        return None

    def _fresh_projections(self) -> dict[str, Projection]:
        source = self._source
        return {name: source.fresh_projection(name) for name in source.projection_versions()}

    def projections_at(self, offset: int) -> dict[str, Projection]:
        """Fresh projections holding the states as of ``offset``: the newest usable
        snapshot before it plus a replay of the events in between."""
        restored = self.restore(offset)
        projections, start = restored if restored is not None else (self._fresh_projections(), 0)
        for record in self._source.read_range(start, offset):
            for projection in projections.values():
                stage = projection.stage()
                stage.apply(record.event, record.offset)
                stage.commit()
        return projections


def _check_offset(value: object, name: str) -> None:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")
