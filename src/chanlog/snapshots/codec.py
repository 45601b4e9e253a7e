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
from chanlog.projections.base import DeferredState, Projection, SnapshotsPerEntity
from chanlog.records import StoredSnapshot

__all__ = [
    "COMPRESSED",
    "COMPRESS_FROM",
    "SNAPSHOT_FORMAT",
    "SnapshotView",
    "decode_snapshot",
    "encode_snapshot",
    "open_snapshot",
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

_LEVEL = 1

_SORTED = orjson.OPT_SORT_KEYS


def encode_snapshot(offset: int, projections: Mapping[str, Projection]) -> StoredSnapshot:
    """Serialize the current states of ``projections`` as the snapshot at ``offset``.

    Raises:
        DecodeError: a projection dumped something that is not JSON data with string keys.
    """
    header: dict[str, Any] = {}
    pieces: list[bytes] = []
    position = 0
    for name in sorted(projections):
        projection = projections[name]
        dumped = projection.dump()
        try:
            states = _split_states(projection, dumped)
            if states is None:
                header[name] = {"schema_version": projection.schema_version, "data": dumped}
                continue
            entities: list[list[Any]] = []
            for entity_id in sorted(states):
                piece = orjson.dumps(states[entity_id], option=_SORTED)
                entities.append([entity_id, position, len(piece)])
                pieces.append(piece)
                position += len(piece)
        except TypeError as exc:
            raise DecodeError(
                f"snapshot at offset {offset}: projection {name!r} dumped non-JSON: {exc}",
                path=f"projections.{name}",
            ) from exc
        rest = {key: value for key, value in dumped.items() if key != "states"}
        header[name] = {
            "schema_version": projection.schema_version,
            "data": rest,
            "entities": entities,
        }
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
    return StoredSnapshot(
        offset=offset,
        versions={name: projection.schema_version for name, projection in projections.items()},
        data=data,
        snapshot_hash=keccak256(data),
    )


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


class _Section:
    """One projection's part of an opened snapshot."""

    __slots__ = ("data", "entities")

    def __init__(self, data: Any, entities: dict[str, tuple[int, int]] | None) -> None:
        self.data = data
        self.entities = entities


class SnapshotView:
    """A verified snapshot whose entity states are parsed only when asked for.

    Built by :func:`open_snapshot`; immutable, safe to share between threads.
    """

    __slots__ = ("_body", "_body_start", "_sections", "offset", "snapshot_hash", "where")

    def __init__(
        self,
        snapshot: StoredSnapshot,
        data: bytes,
        sections: dict[str, _Section],
        body_start: int,
    ) -> None:
        self.offset = snapshot.offset
        """Events ``[0, offset)`` are folded into it."""
        self.snapshot_hash = snapshot.snapshot_hash
        """keccak256 of the snapshot's bytes."""
        self.where = f"snapshot at offset {snapshot.offset}"
        self._body = memoryview(data)
        self._body_start = body_start
        self._sections = sections

    def projection_names(self) -> list[str]:
        """The projections the snapshot holds, sorted."""
        return sorted(self._sections)

    def _section(self, name: str) -> _Section:
        section = self._sections.get(name)
        if section is None:
            raise DecodeError(f"{self.where}: holds no projection {name!r}", path="projections")
        return section

    def is_indexed(self, name: str) -> bool:
        """Whether projection ``name`` stores its entities one by one (else: one dump)."""
        return self._section(name).entities is not None

    def entity_count(self, name: str) -> int:
        """How many entities projection ``name`` holds (indexed projections only)."""
        entities = self._section(name).entities
        return 0 if entities is None else len(entities)

    def raw_entity(self, name: str, entity_id: str) -> Any | None:
        """The dumped state of one entity of an indexed projection (parsed from its slice of
        the body alone), or ``None`` when the snapshot does not hold it."""
        entities = self._section(name).entities
        if entities is None:
            raise DecodeError(f"{self.where}: projection {name!r} is not indexed per entity")
        span = entities.get(entity_id)
        if span is None:
            return None
        return self._parse_slice(name, entity_id, span)

    def _parse_slice(self, name: str, entity_id: str, span: tuple[int, int]) -> Any:
        start = self._body_start + span[0]
        try:
            return orjson.loads(self._body[start : start + span[1]])
        except orjson.JSONDecodeError as exc:
            raise DecodeError(
                f"{self.where}: state of {name} {entity_id} is not JSON: {exc}",
                path=f"projections.{name}.entities",
            ) from exc

    def projection_data(self, name: str, *, deferred: bool = False) -> Any:
        """What projection ``name`` dumped, whole (every slice parsed, so a corrupt one is
        refused here): the argument of :meth:`~chanlog.projections.Projection.load`. With
        ``deferred``, each entity's state comes as a
        :class:`~chanlog.projections.DeferredState` that the projection builds on first use."""
        section = self._section(name)
        if section.entities is None:
            return section.data
        parse = self._parse_slice
        wrap = DeferredState if deferred else _as_is
        states = {
            entity_id: wrap(parse(name, entity_id, span))
            for entity_id, span in section.entities.items()
        }
        return {**section.data, "states": states}


def _as_is(data: Any) -> Any:
    return data


def open_snapshot(snapshot: StoredSnapshot) -> SnapshotView:
    """Verify ``snapshot`` and parse its header; entity states are parsed on demand.

    Raises:
        DecodeError: the bytes do not match the hash, the offset or the versions the
            snapshot claims, or the header is not a well-formed format-2 header.
    """
    where = f"snapshot at offset {snapshot.offset}"
    data = snapshot.data
    if type(data) is not bytes:
        raise DecodeError(f"{where}: data is {type(data).__name__}, not bytes")
    if not isinstance(snapshot.versions, Mapping):
        raise DecodeError(f"{where}: versions must be an object")
    if keccak256(data) != snapshot.snapshot_hash:
        raise DecodeError(f"{where}: bytes do not match the snapshot hash")
    data = _inflated(data, where)
    newline = data.find(b"\n")
    head = data if newline < 0 else data[:newline]
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != SNAPSHOT_FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise DecodeError(
            f"{where}: unknown snapshot format {found!r} (this chanlog reads {SNAPSHOT_FORMAT})"
        )
    if newline < 0:
        raise DecodeError(f"{where}: no newline after the header")
    if header.get("offset") != snapshot.offset:
        raise DecodeError(f"{where}: the bytes describe offset {header.get('offset')!r}")
    projections = header.get("projections")
    if not isinstance(projections, dict):
        raise DecodeError(f"{where}: no projections object", path="projections")
    body_start = newline + 1
    body_length = len(data) - body_start
    sections: dict[str, _Section] = {}
    for name, version in snapshot.versions.items():
        entry = projections.get(name)
        if (
            not isinstance(entry, dict)
            or entry.get("schema_version") != version
            or "data" not in entry
        ):
            raise DecodeError(
                f"{where}: projection {name!r} is not stored at schema version {version}",
                path=f"projections.{name}",
            )
        entities = None
        if "entities" in entry:
            if not isinstance(entry["data"], dict):
                raise DecodeError(
                    f"{where}: projection {name!r}: indexed data must be an object",
                    path=f"projections.{name}.data",
                )
            entities = _entity_index(entry["entities"], body_length, f"{where}", name)
        sections[name] = _Section(entry["data"], entities)
    return SnapshotView(snapshot, data, sections, body_start)


def _inflated(data: bytes, where: str) -> bytes:
    """The format-2 bytes of a snapshot, decompressed when they were stored compressed."""
    if not data.startswith(COMPRESSED):
        return data
    try:
        return zlib.decompress(memoryview(data)[len(COMPRESSED) :])
    except zlib.error as exc:
        raise DecodeError(f"{where}: compressed bytes do not decompress: {exc}") from exc


def _entity_index(raw: Any, body_length: int, where: str, name: str) -> dict[str, tuple[int, int]]:
    """``entities`` of a header checked: ids are strings, spans lie inside the body."""
    path = f"projections.{name}.entities"
    if not isinstance(raw, list):
        raise DecodeError(f"{where}: projection {name!r}: entities must be a list", path=path)
    index: dict[str, tuple[int, int]] = {}
    for item in raw:
        if (
            type(item) is not list
            or len(item) != 3
            or type(item[0]) is not str
            or type(item[1]) is not int
            or type(item[2]) is not int
            or item[1] < 0
            or item[2] < 0
            or item[1] + item[2] > body_length
        ):
            raise DecodeError(f"{where}: projection {name!r}: bad entity entry {item!r}", path=path)
        if item[0] in index:
            raise DecodeError(
                f"{where}: projection {name!r}: entity {item[0]} is listed twice", path=path
            )
        index[item[0]] = (item[1], item[2])
    return index


def decode_snapshot(snapshot: StoredSnapshot) -> dict[str, Any]:
    """Projection name → the data it dumped (every entity parsed); :class:`DecodeError`
    when the bytes do not match the hash, the offset or the versions the snapshot claims."""
    view = open_snapshot(snapshot)
    return {name: view.projection_data(name) for name in snapshot.versions}
