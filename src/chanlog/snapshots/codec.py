"""The snapshot format: projection states as of an offset, indexed per entity.

A snapshot is one line of canonical JSON (the *header*), a newline, then the *body*: the
canonical JSON of every entity state, one after another::

    {"format": 2, "offset": N, "projections": {
        "channel": {"schema_version": 1, "data": {"index": {...}},
                    "entities": [["0xab..", 0, 812], ["0xcd..", 812, 640], ...]},
        "thirdparty": {"schema_version": 3, "data": <its whole dump>}}}
    <entity 0xab.. state JSON><entity 0xcd.. state JSON>...

A projection that snapshots per entity (:class:`~chanlog.projections.SnapshotsPerEntity`,
as every :class:`~chanlog.projections.entity.EntityProjection` does) has its ``states``
split out of ``data`` into the body; ``entities`` lists each entity id with the start and
length of its state in the body, in id order. Any other projection keeps its whole
dump in ``data``. Keys are sorted and entities ordered, so equal states always give equal
bytes and an equal ``snapshot_hash`` (keccak256 of all the bytes).

Splitting is what lets reconstruction read one entity out of a snapshot of a million: it
parses the header once and then only that entity's slice of the body. A snapshot of
:data:`COMPRESS_FROM` bytes or more is stored as :data:`COMPRESSED` followed by the zlib
stream of those bytes (decompressed once when it is opened); the hash is always that of the
stored bytes.
:func:`open_snapshot` checks the hash, the offset and every schema version before it hands
out anything, so a snapshot that does not say exactly what it claims is never trusted.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from chanlog.errors import DecodeError
from chanlog.hashing import keccak256
from chanlog.projections.base import Projection, SnapshotsPerEntity
from chanlog.records import StoredSnapshot

__all__ = [
    "COMPRESSED",
    "COMPRESS_FROM",
    "INCREMENTAL",
    "SNAPSHOT_FORMAT",
    "DumpedProjection",
    "base_reference",
    "build_snapshot",
    "dump_projections",
    "encode_snapshot",
]

SNAPSHOT_FORMAT = 2
"""The format this chanlog writes and reads; a snapshot in any other is ignored."""

COMPRESSED = b"zlib\n"
"""What the stored bytes of a compressed snapshot start with (never the start of a JSON
header); zlib's stream of the format-2 bytes follows (ADR 0030)."""

COMPRESS_FROM = 64 * 1024
"""Snapshots this large or larger are stored compressed: the state of a node holds the same
hex ids and keys over and over, so zlib's fastest level stores them in about a quarter of
the space; smaller ones are not worth the call."""

INCREMENTAL = b"base "
"""What the stored bytes of an incremental snapshot start with: ``base <offset> 0x<hash>``
and a newline name the snapshot it is taken on (read without decompressing anything), and
a snapshot's bytes follow, holding only the entities that changed since that one
(ADR 0036)."""

_REFERENCE_MAX = len(INCREMENTAL) + 20 + 1 + 66 + 1
"""The longest first line of an incremental snapshot."""

_LEVEL = 1

_SORTED = orjson.OPT_SORT_KEYS


def encode_snapshot(offset: int, projections: Mapping[str, Projection]) -> StoredSnapshot:
    """Serialize the current states of ``projections`` as the snapshot at ``offset``: a
    whole one, which needs no other snapshot to be read.

    Raises:
        DecodeError: a projection dumped something that is not JSON data with string keys.
    """
    return build_snapshot(offset, dump_projections(offset, projections))


class DumpedProjection:
    """One projection's part of a snapshot being written: its schema version, its dump (the
    per-entity states split out as canonical JSON pieces, sorted by id, when it
    :class:`~chanlog.projections.SnapshotsPerEntity`), and, in an incremental snapshot, the
    entities its base holds that are gone since and the changes of the objects of its data
    (an index) since the base's."""

    __slots__ = ("data", "entities", "name", "patched", "removed", "schema_version")

    def __init__(
        self,
        name: str,
        schema_version: int,
        data: Any,
        entities: list[tuple[str, bytes]] | None,
        removed: list[str] | None = None,
        patched: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.name = name
        self.schema_version = schema_version
        self.data = data
        """The whole dump, or without its ``states`` when ``entities`` holds them (and
        without the keys ``patched`` holds)."""
        self.entities = entities
        self.removed = removed
        self.patched = patched
        """Data key → ``{"set": {...}, "unset": [...]}``: the object at that key is the
        base's with these entries set and these removed."""


def dump_projections(offset: int, projections: Mapping[str, Projection]) -> list[DumpedProjection]:
    """Every projection's dump, by name, with per-entity states serialized one by one.

    Raises:
        DecodeError: a projection dumped something that is not JSON data with string keys.
    """
    dumped: list[DumpedProjection] = []
    for name in sorted(projections):
        projection = projections[name]
        dump = projection.dump()
        try:
            states = _split_states(projection, dump)
            if states is None:
                dumped.append(DumpedProjection(name, projection.schema_version, dump, None))
                continue
            entities = [
                (entity_id, orjson.dumps(states[entity_id], option=_SORTED))
                for entity_id in sorted(states)
            ]
        except TypeError as exc:
            raise DecodeError(
                f"snapshot at offset {offset}: projection {name!r} dumped non-JSON: {exc}",
                path=f"projections.{name}",
            ) from exc
        rest = {key: value for key, value in dump.items() if key != "states"}
        dumped.append(DumpedProjection(name, projection.schema_version, rest, entities))
    return dumped


def build_snapshot(
    offset: int, dumped: list[DumpedProjection], base: tuple[int, bytes] | None = None
) -> StoredSnapshot:
    """The stored snapshot at ``offset`` of ``dumped``; with ``base`` (the offset and hash
    of another snapshot), an incremental one whose per-entity sections hold only what
    changed since that one (ADR 0036).

    Raises:
        DecodeError: a dump is not JSON data with string keys.
    """
    header: dict[str, Any] = {}
    pieces: list[bytes] = []
    position = 0
    for projection in dumped:
        section: dict[str, Any] = {
            "schema_version": projection.schema_version,
            "data": projection.data,
        }
        if projection.entities is not None:
            index: list[list[Any]] = []
            for entity_id, piece in projection.entities:
                index.append([entity_id, position, len(piece)])
                pieces.append(piece)
                position += len(piece)
            section["entities"] = index
            if projection.removed:
                section["removed"] = projection.removed
            if projection.patched:
                section["patched"] = projection.patched
        header[projection.name] = section
    body = {"format": SNAPSHOT_FORMAT, "offset": offset, "projections": header}
    try:
        head = orjson.dumps(body, option=_SORTED)
    except TypeError as exc:
        raise DecodeError(
            f"snapshot at offset {offset}: a projection dumped non-JSON: {exc}"
        ) from exc
    data = b"".join([head, b"\n", *pieces])
    if len(data) >= COMPRESS_FROM:
        data = COMPRESSED + zlib.compress(data, _LEVEL)
    if base is not None:
        data = b"%s%d 0x%s\n%s" % (INCREMENTAL, base[0], base[1].hex().encode(), data)
    return StoredSnapshot(
        offset=offset,
        versions={projection.name: projection.schema_version for projection in dumped},
        data=data,
        snapshot_hash=keccak256(data),
    )


def base_reference(snapshot: StoredSnapshot) -> tuple[int, bytes] | None:
    """The offset and hash of the snapshot an incremental ``snapshot`` is taken on, read
    from its first line alone (``None``: a whole snapshot).

    Raises:
        DecodeError: the first line says incremental but is not ``base <offset> 0x<hash>``
            naming an earlier offset.
    """
    data = snapshot.data
    if type(data) is not bytes or not data.startswith(INCREMENTAL):
        return None
    where = f"snapshot at offset {snapshot.offset}"
    end = data.find(b"\n", 0, _REFERENCE_MAX)
    fields = data[len(INCREMENTAL) : end].split(b" ") if end > 0 else []
    if (
        len(fields) != 2
        or not fields[0].isdigit()
        or len(fields[1]) != 66
        or not fields[1].startswith(b"0x")
    ):
        raise DecodeError(f"{where}: malformed base reference", path="base")
    try:
        base = (int(fields[0]), bytes.fromhex(fields[1][2:].decode("ascii")))
    except ValueError as exc:
        raise DecodeError(f"{where}: malformed base reference: {exc}", path="base") from exc
    if base[0] >= snapshot.offset:
        raise DecodeError(
            f"{where}: its base must be an earlier snapshot, not offset {base[0]}", path="base"
        )
    return base


def _split_states(projection: Projection, dumped: Any) -> Mapping[str, Any] | None:
    """The per-entity states of a :class:`SnapshotsPerEntity` projection's dump, or
    ``None`` when the projection keeps its own shape (stored whole)."""
    if not isinstance(projection, SnapshotsPerEntity) or not isinstance(dumped, dict):
        return None
    states = dumped.get("states")
    if not isinstance(states, Mapping):
        return None
    if not all(type(key) is str for key in states):
        raise TypeError("entity ids must be strings")
    return states
