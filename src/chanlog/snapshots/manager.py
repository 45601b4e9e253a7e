"""The :class:`SnapshotManager`: takes, finds and reads snapshots for one store.

A snapshot is an optimisation, never a source of truth: one whose schema versions differ
from the projections in use, or whose bytes do not match its hash, is skipped and the
store (or the reconstructor) replays instead.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from chanlog.errors import DecodeError, InvalidArgument
from chanlog.events.system import SnapshotCreated
from chanlog.projections.base import Projection
from chanlog.records import StoredSnapshot
from chanlog.snapshots.codec import SnapshotView, encode_snapshot, open_snapshot

if TYPE_CHECKING:
    from chanlog.store import EventStore

__all__ = ["SnapshotManager"]

logger = logging.getLogger("chanlog.snapshots")

_VIEW_CACHE_SIZE = 4
"""Opened snapshots kept (each verified once: its hash covers every byte)."""
_STATE_CACHE_SIZE = 1024
"""Entity states read out of snapshots kept for reconstruction (states are immutable)."""
_ABSENT = object()


class SnapshotManager:
    """Snapshots of one store's projections.

    ``create_snapshot(offset)`` stores the projection states as of ``offset`` through the
    backend and appends ``snapshot-created``; ``latest_snapshot(before_offset)`` finds the
    newest usable one. Reached as ``store.snapshots``.

    Reading is cached at two levels, both bounded LRUs: an opened snapshot (hash verified,
    header parsed) is kept, so the next reconstruction from it does not hash its bytes
    again; and each entity state read out of one is kept, so a reconstruction at another
    offset past the same snapshot parses nothing at all.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._views: OrderedDict[tuple[int, bytes], SnapshotView] = OrderedDict()
        self._states: OrderedDict[tuple[int, bytes, str, str], Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.opened_count = 0
        """How many snapshots were opened (verified and parsed; a cache miss each)."""
        self.state_loads = 0
        """How many entity states were parsed out of snapshots (a cache miss each)."""

    # -- finding -------------------------------------------------------------------------

    def _versions(self) -> dict[str, int]:
        return {name: p.schema_version for name, p in self._store._projections.items()}

    def candidates(
        self, before_offset: int | None, versions: Mapping[str, int]
    ) -> Iterator[StoredSnapshot]:
        """Snapshots at offsets ``<= before_offset`` (any, when None), newest first, whose
        schema versions match ``versions`` (projection name → version)."""
        backend = self._store.backend
        before = before_offset
        while before is None or before >= 0:
            snapshot = backend.latest_snapshot(before)
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
        for snapshot in self.candidates(before_offset, self._versions()):
            try:
                self.open(snapshot)
            except DecodeError as exc:
                logger.warning("ignoring snapshot at offset %d: %s", snapshot.offset, exc)
                continue
            return snapshot
        return None

    def open(self, snapshot: StoredSnapshot) -> SnapshotView:
        """``snapshot`` verified and its header parsed (cached per offset and hash).

        Raises:
            DecodeError: it does not say exactly what it claims (see
                :func:`~chanlog.snapshots.codec.open_snapshot`).
        """
        key = (snapshot.offset, snapshot.snapshot_hash)
        with self._cache_lock:
            cached = self._views.get(key)
            if cached is not None:
                self._views.move_to_end(key)
                return cached
        view = open_snapshot(snapshot)
        with self._cache_lock:
            self.opened_count += 1
            self._views[key] = view
            while len(self._views) > _VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return view

    def decode(self, snapshot: StoredSnapshot) -> Mapping[str, Any]:
        """Projection name → dumped data of ``snapshot`` (verified; every entity parsed)."""
        view = self.open(snapshot)
        return {name: view.projection_data(name) for name in snapshot.versions}

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
                logger.warning("ignoring snapshot at offset %d: %s", snapshot.offset, exc)
                continue
            with self._cache_lock:
                self.state_loads += 1
                self._states[key] = state
                while len(self._states) > _STATE_CACHE_SIZE:
                    self._states.popitem(last=False)
            return state, snapshot.offset
        return None, 0

    @staticmethod
    def _read_entity(view: SnapshotView, projection: Projection, entity_id: str) -> Any | None:
        name = projection.name
        if view.is_indexed(name):
            raw = view.raw_entity(name, entity_id)
            return None if raw is None else projection.load_state(raw)
        return projection.state_in_dump(view.projection_data(name), entity_id)

    def restore(self, before_offset: int) -> tuple[dict[str, Projection], int] | None:
        """Fresh projections loaded from the newest usable snapshot at an offset
        ``<= before_offset``, and its offset; ``None`` when there is none."""
        store = self._store
        for snapshot in self.candidates(before_offset, self._versions()):
            try:
                view = self.open(snapshot)
                fresh = self._fresh_projections()
                for name, projection in fresh.items():
                    projection.load(view.projection_data(name, deferred=True))
            except DecodeError as exc:
                logger.warning("ignoring snapshot at offset %d: %s", snapshot.offset, exc)
                continue
            logger.debug("%r restored from the snapshot at offset %d", store, snapshot.offset)
            return fresh, snapshot.offset
        return None

    def _fresh_projections(self) -> dict[str, Projection]:
        host = self._store.plugins
        return {name: host.lookup("projections", name)() for name in self._store._projections}

    def projections_at(self, offset: int) -> dict[str, Projection]:
        """Fresh projections holding the states as of ``offset``: the newest usable
        snapshot before it plus a replay of the events in between."""
        restored = self.restore(offset)
        projections, start = restored if restored is not None else (self._fresh_projections(), 0)
        for record in self._store.read_range(start, offset):
            for projection in projections.values():
                stage = projection.stage()
                stage.apply(record.event, record.offset)
                stage.commit()
        return projections

    # -- taking --------------------------------------------------------------------------

    def create_snapshot(self, offset: int | None = None) -> StoredSnapshot:
        """Snapshot the projection states as of ``offset`` (default: the end of the log),
        store it through the backend and append ``snapshot-created``.

        Raises:
            InvalidArgument: ``offset`` is negative or beyond the end of the log.
            StorageError: the backend could not store it.
        """
        store = self._store
        with store._lock:
            length = store._known
            if offset is None:
                offset = length
            _check_offset(offset, "offset")
            if offset > length:
                raise InvalidArgument(f"offset {offset} is beyond the end of the log ({length})")
            projections = store._projections if offset == length else self.projections_at(offset)
            snapshot = encode_snapshot(offset, projections)
            store.backend.save_snapshot(snapshot)
            last = store._last_snapshot_offset
            store._last_snapshot_offset = offset if last is None else max(last, offset)
            timestamp = 0
            if offset > 0:
                timestamp = next(store.read_range(offset - 1, offset)).event.timestamp_ms
            objective = projections.get("objective")
            channel = projections.get("channel")
            event = SnapshotCreated(
                snapshot_offset=offset,
                snapshot_hash="0x" + snapshot.snapshot_hash.hex(),
                objective_count=0 if objective is None else len(objective),
                channel_count=0 if channel is None else len(channel),
                timestamp_ms=timestamp,
            )
            store._append_snapshot_event(event)
        return snapshot


def _check_offset(value: object, name: str) -> None:
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")
