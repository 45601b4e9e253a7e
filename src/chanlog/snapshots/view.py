"""Reading a snapshot: :func:`open_snapshot` checks it and parses its header, and a
:class:`SnapshotView` parses one entity's state at a time out of it, reading through the
base of an incremental snapshot the entities it does not hold (ADR 0036). The format is
described in :mod:`chanlog.snapshots.codec`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from chanlog.errors import DecodeError
from chanlog.hashing import keccak256
from chanlog.projections.base import DeferredState
from chanlog.records import StoredSnapshot
from chanlog.snapshots.codec import COMPRESSED, SNAPSHOT_FORMAT, base_reference

__all__ = ["SnapshotView", "decode_snapshot", "open_snapshot"]


class _Section:
    """One projection's part of an opened snapshot."""

    __slots__ = ("data", "entities", "patched", "removed")

    def __init__(
        self,
        data: Any,
        entities: dict[str, tuple[int, int]] | None,
        removed: frozenset[str] = frozenset(),
        patched: dict[str, tuple[dict[str, Any], list[str]]] | None = None,
    ) -> None:
        self.data = data
        self.entities = entities
        self.removed = removed
        self.patched = patched


class SnapshotView:
    """A verified snapshot whose entity states are parsed only when asked for.

    Built by :func:`open_snapshot`; immutable, safe to share between threads. The view of
    an incremental snapshot holds the view of its base and reads through it the entities
    that did not change since (ADR 0036).
    """

    __slots__ = (
        "_body",
        "_body_start",
        "_sections",
        "base",
        "offset",
        "snapshot_hash",
        "stored_size",
        "versions",
        "where",
    )

    def __init__(
        self,
        snapshot: StoredSnapshot,
        data: bytes,
        sections: dict[str, _Section],
        body_start: int,
        base: SnapshotView | None = None,
    ) -> None:
        self.offset = snapshot.offset
        """Events ``[0, offset)`` are folded into it."""
        self.snapshot_hash = snapshot.snapshot_hash
        """keccak256 of the snapshot's bytes."""
        self.stored_size = len(snapshot.data)
        """How many bytes are stored (compressed, and with the first line of an incremental
        snapshot): what a backend's ``snapshot_sizes()`` reports for it."""
        self.versions = dict(snapshot.versions)
        """Projection name → the schema version its state was written with."""
        self.base = base
        """The view of the snapshot this incremental one is taken on (``None``: whole)."""
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

    def _indexed(self, name: str) -> dict[str, tuple[int, int]]:
        entities = self._section(name).entities
        if entities is None:
            raise DecodeError(f"{self.where}: projection {name!r} is not indexed per entity")
        return entities

    def is_indexed(self, name: str) -> bool:
        """Whether projection ``name`` stores its entities one by one (else: one dump)."""
        return self._section(name).entities is not None

    def entity_count(self, name: str) -> int:
        """How many entities projection ``name`` holds (indexed projections only)."""
        if self._section(name).entities is None:
            return 0
        return len(self._spans(name))

    def raw_entity(self, name: str, entity_id: str) -> Any | None:
        """The dumped state of one entity of an indexed projection (parsed from its slice of
        the body alone), or ``None`` when the snapshot does not hold it."""
        view: SnapshotView | None = self
        while view is not None:
            span = view._indexed(name).get(entity_id)
            if span is not None:
                return view._parse_slice(name, entity_id, span)
            if entity_id in view._sections[name].removed:
                return None
            view = view.base
        return None

    def _spans(self, name: str) -> dict[str, tuple[SnapshotView, tuple[int, int]]]:
        """Entity id → the view holding its state and the span there, through the bases."""
        chain: list[SnapshotView] = []
        view: SnapshotView | None = self
        while view is not None:
            chain.append(view)
            view = view.base
        spans: dict[str, tuple[SnapshotView, tuple[int, int]]] = {}
        for view in reversed(chain):  # oldest first: each newer one overrides
            for entity_id in view._sections[name].removed:
                spans.pop(entity_id, None)
            for entity_id, span in view._indexed(name).items():
                spans[entity_id] = (view, span)
        return spans

    def entity_slices(self, name: str) -> dict[str, bytes]:
        """Entity id → the stored bytes of its state (canonical JSON, as written), through
        the bases, for an indexed projection."""
        return {
            entity_id: bytes(view._slice(span))
            for entity_id, (view, span) in self._spans(name).items()
        }

    def own_size(self) -> int:
        """Bytes of entity states this snapshot holds itself (not through its base)."""
        return sum(
            length
            for section in self._sections.values()
            if section.entities is not None
            for _start, length in section.entities.values()
        )

    def _slice(self, span: tuple[int, int]) -> memoryview:
        start = self._body_start + span[0]
        return self._body[start : start + span[1]]

    def _parse_slice(self, name: str, entity_id: str, span: tuple[int, int]) -> Any:
        try:
            return orjson.loads(self._slice(span))
        except orjson.JSONDecodeError as exc:
            raise DecodeError(
                f"{self.where}: state of {name} {entity_id} is not JSON: {exc}",
                path=f"projections.{name}.entities",
            ) from exc

    def data_of(self, name: str) -> Any:
        """What projection ``name`` dumped besides its entity states (all of it, for a
        projection not indexed per entity), through the bases: an object of its data an
        incremental snapshot patches is its base's with the entries set and removed."""
        section = self._section(name)
        if not section.patched:
            return section.data
        assert self.base is not None  # checked when opened: patches need a base
        underneath = self.base.data_of(name)
        data = dict(section.data)
        for key, (changed, removed) in section.patched.items():
            patched = underneath.get(key) if isinstance(underneath, dict) else None
            if not isinstance(patched, dict):
                raise DecodeError(
                    f"{self.where}: projection {name!r} patches {key!r}, which its base "
                    "does not hold as an object",
                    path=f"projections.{name}.patched",
                )
            gone = set(removed)
            patched = {entry: value for entry, value in patched.items() if entry not in gone}
            patched.update(changed)
            data[key] = patched
        return data

    def projection_data(self, name: str, *, deferred: bool = False) -> Any:
        """What projection ``name`` dumped, whole (every slice parsed, so a corrupt one is
        refused here): the argument of :meth:`~chanlog.projections.Projection.load`. With
        ``deferred``, each entity's state comes as a
        :class:`~chanlog.projections.DeferredState` that the projection builds on first use."""
        section = self._section(name)
        if section.entities is None:
            return section.data
        data = self.data_of(name)
        wrap = DeferredState if deferred else _as_is
        states = {
            entity_id: wrap(view._parse_slice(name, entity_id, span))
            for entity_id, (view, span) in sorted(self._spans(name).items())
        }
        return {**data, "states": states}


def _as_is(data: Any) -> Any:
    return data


def open_snapshot(snapshot: StoredSnapshot, base: SnapshotView | None = None) -> SnapshotView:
    """Verify ``snapshot`` and parse its header; entity states are parsed on demand. An
    incremental snapshot (:func:`base_reference`) is opened on ``base``, the view of the
    snapshot it names (:meth:`~chanlog.snapshots.SnapshotManager.open` finds it); a whole
    one ignores ``base``.

    Raises:
        DecodeError: the bytes do not match the hash, the offset or the versions the
            snapshot claims, the header is not a well-formed format-2 header, or an
            incremental snapshot's base is not given, differs from the one it names, or
            holds other projections or schema versions.
    """
    where = f"snapshot at offset {snapshot.offset}"
    data = snapshot.data
    if type(data) is not bytes:
        raise DecodeError(f"{where}: data is {type(data).__name__}, not bytes")
    if not isinstance(snapshot.versions, Mapping):
        raise DecodeError(f"{where}: versions must be an object")
    if keccak256(data) != snapshot.snapshot_hash:
        raise DecodeError(f"{where}: bytes do not match the snapshot hash")
    reference = base_reference(snapshot)
    if reference is None:
        base = None
    else:
        _check_base(where, snapshot, reference, base)
        data = data[data.index(b"\n") + 1 :]
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
    sections = {
        name: _section_of(projections.get(name), name, version, body_length, where, base)
        for name, version in snapshot.versions.items()
    }
    return SnapshotView(snapshot, data, sections, body_start, base)


def _check_base(
    where: str,
    snapshot: StoredSnapshot,
    reference: tuple[int, bytes],
    base: SnapshotView | None,
) -> None:
    """Refuse a base view that is not the snapshot ``reference`` names, with the same
    projections at the same schema versions."""
    if base is None:
        raise DecodeError(
            f"{where}: incremental on the snapshot at offset {reference[0]}, which was not "
            "given (open it through SnapshotManager.open)",
            path="base",
        )
    if (base.offset, base.snapshot_hash) != reference:
        raise DecodeError(
            f"{where}: incremental on the snapshot at offset {reference[0]} with hash "
            f"0x{reference[1].hex()}, given the one at offset {base.offset} with hash "
            f"0x{base.snapshot_hash.hex()}",
            path="base",
        )
    if base.versions != dict(snapshot.versions):
        raise DecodeError(
            f"{where}: its base holds projections {base.versions}, it holds "
            f"{dict(snapshot.versions)}",
            path="base",
        )


def _section_of(
    entry: Any, name: str, version: int, body_length: int, where: str, base: SnapshotView | None
) -> _Section:
    """One projection's entry of a header, checked."""
    if not isinstance(entry, dict) or entry.get("schema_version") != version or "data" not in entry:
        raise DecodeError(
            f"{where}: projection {name!r} is not stored at schema version {version}",
            path=f"projections.{name}",
        )
    if "entities" not in entry:
        return _Section(entry["data"], None)
    if not isinstance(entry["data"], dict):
        raise DecodeError(
            f"{where}: projection {name!r}: indexed data must be an object",
            path=f"projections.{name}.data",
        )
    entities = _entity_index(entry["entities"], body_length, where, name)
    removed = entry.get("removed", [])
    if base is not None and not base.is_indexed(name):
        raise DecodeError(
            f"{where}: projection {name!r} is indexed per entity, in its base it is not",
            path=f"projections.{name}",
        )
    if (
        not isinstance(removed, list)
        or not all(type(entity_id) is str for entity_id in removed)
        or (removed and base is None)
    ):
        raise DecodeError(
            f"{where}: projection {name!r}: removed must be a list of entity ids, in an "
            "incremental snapshot only",
            path=f"projections.{name}.removed",
        )
    patched = _patches(entry.get("patched"), base, where, name)
    return _Section(entry["data"], entities, frozenset(removed), patched)


def _patches(
    raw: Any, base: SnapshotView | None, where: str, name: str
) -> dict[str, tuple[dict[str, Any], list[str]]] | None:
    """``patched`` of a header checked: data key → (entries set, entries removed), in an
    incremental snapshot only."""
    if raw is None:
        return None
    path = f"projections.{name}.patched"
    if base is None or not isinstance(raw, dict):
        raise DecodeError(
            f"{where}: projection {name!r}: patched must be an object, in an incremental "
            "snapshot only",
            path=path,
        )
    patches: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for key, patch in raw.items():
        if (
            not isinstance(patch, dict)
            or set(patch) != {"set", "unset"}
            or not isinstance(patch["set"], dict)
            or not isinstance(patch["unset"], list)
            or not all(type(entry) is str for entry in patch["unset"])
        ):
            raise DecodeError(
                f"{where}: projection {name!r}: bad patch of {key!r}: {patch!r}", path=path
            )
        patches[key] = (patch["set"], patch["unset"])
    return patches


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
