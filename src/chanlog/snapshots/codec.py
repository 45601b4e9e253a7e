"""The snapshot format: projection states as of an offset, as canonical JSON bytes.

::

    {"format": 1, "offset": N,
     "projections": {"objective": {"schema_version": 1, "data": ...}, ...}}

Keys are sorted, so the same states always give the same bytes and the same
``snapshot_hash`` (keccak256 of the bytes). Decoding checks the hash, the offset and every
schema version, so a snapshot that does not say exactly what it claims is never trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from chanlog.errors import DecodeError
from chanlog.hashing import keccak256
from chanlog.projections.base import Projection
from chanlog.records import StoredSnapshot

__all__ = ["SNAPSHOT_FORMAT", "decode_snapshot", "encode_snapshot"]

SNAPSHOT_FORMAT = 1


def encode_snapshot(offset: int, projections: Mapping[str, Projection]) -> StoredSnapshot:
    """Serialize the current states of ``projections`` as the snapshot at ``offset``."""
    body = {
        "format": SNAPSHOT_FORMAT,
        "offset": offset,
        "projections": {
            name: {"schema_version": projection.schema_version, "data": projection.dump()}
            for name, projection in projections.items()
        },
    }
    try:
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise DecodeError(
            f"snapshot at offset {offset}: a projection dumped non-JSON: {exc}"
        ) from exc
    return StoredSnapshot(
        offset=offset,
        versions={name: projection.schema_version for name, projection in projections.items()},
        data=bytes(data),
        snapshot_hash=keccak256(data),
    )


def decode_snapshot(snapshot: StoredSnapshot) -> dict[str, Any]:
    """Projection name → the data it dumped; :class:`DecodeError` when the bytes do not
    match the hash, the offset or the versions the snapshot claims."""
    where = f"snapshot at offset {snapshot.offset}"
    if keccak256(snapshot.data) != snapshot.snapshot_hash:
        raise DecodeError(f"{where}: bytes do not match the snapshot hash")
    try:
        body = orjson.loads(snapshot.data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{where}: not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != SNAPSHOT_FORMAT:
        raise DecodeError(f"{where}: unknown snapshot format")
    if body.get("offset") != snapshot.offset:
        raise DecodeError(f"{where}: the bytes describe offset {body.get('offset')!r}")
    projections = body.get("projections")
    if not isinstance(projections, dict):
        raise DecodeError(f"{where}: no projections object", path="projections")
    result: dict[str, Any] = {}
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
        result[name] = entry["data"]
    return result
