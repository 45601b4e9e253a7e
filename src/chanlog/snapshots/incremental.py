"""Incremental snapshots (ADR 0036): a snapshot that holds only the entities whose state
changed since an earlier snapshot, and reads the others through it.

A node whose channels are mostly idle rewrites the same states in every whole snapshot;
an incremental one writes what changed. The store remembers, per entity, a digest of the
state it wrote in its last snapshot (:class:`SnapshotChain`) and compares. Chains stay
short and cheap to keep: a whole snapshot is taken again once a chain holds
:data:`MAX_CHAIN` incremental ones, or when what the chain's incremental snapshots hold
would pass half the size of a whole one (when most entities change between two
snapshots, every snapshot is whole, as before).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from chanlog.errors import DecodeError
from chanlog.projections.base import Projection
from chanlog.records import StoredSnapshot
from chanlog.snapshots.codec import DumpedProjection, build_snapshot, dump_projections
from chanlog.snapshots.view import SnapshotView

__all__ = ["MAX_CHAIN", "SnapshotChain", "chain_of", "encode_incremental"]

_SORTED = orjson.OPT_SORT_KEYS

MAX_CHAIN = 8
"""The most incremental snapshots between two whole ones: reading an entity that no
recent snapshot changed walks at most this many headers."""


class SnapshotChain:
    """What the last snapshot a store took holds, to take the next one on it.

    Attributes:
        offset: the snapshot's offset.
        snapshot_hash: its hash (an incremental snapshot names its base by both).
        versions: projection name → schema version (a chain never spans a change).
        depth: incremental snapshots since the last whole one (0: it is whole).
        chained: bytes of entity states the chain's incremental snapshots hold.
        whole: bytes of entity states a whole snapshot of the same states holds.
        digests: projection name → entity id → digest of its state's bytes, for the
            projections stored per entity.
        entries: projection name → data key → entry → digest of its value's bytes, for
            the objects (indexes) in the data of the projections stored per entity.
        lineage: the offsets and stored sizes (bytes) of the snapshots it is read through,
            its whole one first and its own last: a snapshot taken on it is readable while
            all of them are stored as they were (:meth:`stored_in`, ADR 0057).
    """

    __slots__ = (
        "chained",
        "depth",
        "digests",
        "entries",
        "lineage",
        "offset",
        "snapshot_hash",
        "versions",
        "whole",
    )

    def __init__(
        self,
        snapshot: StoredSnapshot | SnapshotView,
        base: SnapshotChain | None,
        chained: int,
        whole: int,
        digests: dict[str, dict[str, bytes]],
        entries: dict[str, dict[str, dict[str, bytes]]],
    ) -> None:
        self.offset = snapshot.offset
        self.snapshot_hash = snapshot.snapshot_hash
        self.versions = dict(snapshot.versions)
        link = (snapshot.offset, _stored_size(snapshot))
        self.lineage: tuple[tuple[int, int], ...] = (*(base.lineage if base else ()), link)
        self.depth = len(self.lineage) - 1
        self.chained = chained
        self.whole = whole
        self.digests = digests
        self.entries = entries

    def stored_in(self, sizes: Mapping[int, int]) -> bool:
        """Whether every snapshot of the chain is still stored as it was, given the stored
        snapshots' ``sizes`` (offset → bytes). Another writer may have pruned one, or taken a
        snapshot again at its offset (one of other schema versions replaces it there): a
        snapshot taken on the chain would then be unreadable. A replacement of exactly the
        same size goes unseen here; readers still refuse it by its hash (ADR 0057)."""
        return all(sizes.get(offset) == size for offset, size in self.lineage)


def _stored_size(snapshot: StoredSnapshot | SnapshotView) -> int:
    return len(snapshot.data) if isinstance(snapshot, StoredSnapshot) else snapshot.stored_size


def encode_incremental(
    offset: int, projections: Mapping[str, Projection], previous: SnapshotChain | None
) -> tuple[StoredSnapshot, SnapshotChain]:
    """The snapshot of ``projections`` at ``offset``: incremental on ``previous`` when that
    one is earlier, holds the same projections at the same schema versions, and the chain
    stays within its bounds; whole otherwise. Returns the snapshot and what it holds.

    Raises:
        DecodeError: a projection dumped something that is not JSON data with string keys.
    """
    dumped = dump_projections(offset, projections)
    digests = {
        projection.name: {entity_id: _digest(piece) for entity_id, piece in projection.entities}
        for projection in dumped
        if projection.entities is not None
    }
    try:
        entries = {
            projection.name: _entry_digests(projection.data)
            for projection in dumped
            if projection.entities is not None
        }
    except TypeError as exc:
        raise DecodeError(
            f"snapshot at offset {offset}: a projection dumped non-JSON: {exc}"
        ) from exc
    whole = _entity_bytes(dumped)
    if previous is not None and _extends(previous, offset, dumped):
        changed = [
            _patched(_changes(projection, digests, previous.digests), entries, previous.entries)
            for projection in dumped
        ]
        size = _entity_bytes(changed)
        if previous.chained + size <= whole // 2:
            base = (previous.offset, previous.snapshot_hash)
            snapshot = build_snapshot(offset, changed, base)
            chained = previous.chained + size
            chain = SnapshotChain(snapshot, previous, chained, whole, digests, entries)
            return snapshot, chain
    snapshot = build_snapshot(offset, dumped)
    return snapshot, SnapshotChain(snapshot, None, 0, whole, digests, entries)


def chain_of(view: SnapshotView) -> SnapshotChain:
    """What a stored snapshot holds, from its opened ``view``: so that a restarted store
    takes its next snapshot on the newest stored one, as the store that took it would
    have. Digests the stored bytes of every entity state (nothing is parsed)."""
    lineage: list[SnapshotView] = []
    link: SnapshotView | None = view
    while link is not None:
        lineage.append(link)
        link = link.base
    lineage.reverse()  # the whole one first
    chain: SnapshotChain | None = None
    chained = 0
    for link in lineage[:-1]:
        chained += link.own_size() if chain is not None else 0
        chain = SnapshotChain(link, chain, chained, 0, {}, {})
    chained += view.own_size() if chain is not None else 0
    slices = {
        name: view.entity_slices(name) for name in view.projection_names() if view.is_indexed(name)
    }
    digests = {
        name: {entity_id: _digest(piece) for entity_id, piece in pieces.items()}
        for name, pieces in slices.items()
    }
    whole = sum(len(piece) for pieces in slices.values() for piece in pieces.values())
    entries = {name: _entry_digests(view.data_of(name)) for name in slices}
    return SnapshotChain(view, chain, chained, whole, digests, entries)


def _entity_bytes(dumped: list[DumpedProjection]) -> int:
    """Bytes of the entity states ``dumped`` holds."""
    return sum(
        len(piece)
        for projection in dumped
        if projection.entities is not None
        for _, piece in projection.entities
    )


def _extends(previous: SnapshotChain, offset: int, dumped: list[DumpedProjection]) -> bool:
    """Whether a snapshot of ``dumped`` at ``offset`` may be taken on ``previous``."""
    return (
        previous.offset < offset
        and previous.depth < MAX_CHAIN
        and previous.versions == {p.name: p.schema_version for p in dumped}
        and all((p.entities is not None) == (p.name in previous.digests) for p in dumped)
    )


def _changes(
    projection: DumpedProjection,
    now: dict[str, dict[str, bytes]],
    before: dict[str, dict[str, bytes]],
) -> DumpedProjection:
    """``projection`` with only the entities whose digest in ``now`` differs from
    ``before``'s (and those ``before`` held that are gone); one stored whole stays whole."""
    if projection.entities is None:
        return projection
    current, known = now[projection.name], before[projection.name]
    entities = [
        (entity_id, piece)
        for entity_id, piece in projection.entities
        if known.get(entity_id) != current[entity_id]
    ]
    removed = sorted(entity_id for entity_id in known if entity_id not in current)
    return DumpedProjection(
        projection.name, projection.schema_version, projection.data, entities, removed
    )


def _entry_digests(data: Any) -> dict[str, dict[str, bytes]]:
    """Data key → entry → digest, for each object (an index) in a projection's data."""
    if not isinstance(data, dict):
        return {}
    return {
        key: {entry: _digest(orjson.dumps(item, option=_SORTED)) for entry, item in value.items()}
        for key, value in data.items()
        if isinstance(value, dict)
    }


def _patched(
    projection: DumpedProjection,
    now: dict[str, dict[str, dict[str, bytes]]],
    before: dict[str, dict[str, dict[str, bytes]]],
) -> DumpedProjection:
    """``projection`` whose data objects that its base's data also holds are written as
    the entries set and removed since (an index of a million entities changes by a few)."""
    if projection.entities is None:
        return projection
    current, known = now[projection.name], before.get(projection.name, {})
    data = dict(projection.data)
    patched: dict[str, dict[str, Any]] = {}
    for key, digests in current.items():
        was = known.get(key)
        if was is None:
            continue  # new since the base: written whole
        value = data.pop(key)
        patched[key] = {
            "set": {
                entry: value[entry] for entry, digest in digests.items() if was.get(entry) != digest
            },
            "unset": sorted(entry for entry in was if entry not in digests),
        }
    return DumpedProjection(
        projection.name,
        projection.schema_version,
        data,
        projection.entities,
        projection.removed,
        patched,
    )


def _digest(piece: bytes) -> bytes:
    # 128 bits: two different states of one entity never meet the same digest by chance,
    # and it keeps the chain's memory at a few dozen bytes per entity.
    return hashlib.blake2b(piece, digest_size=16).digest()
