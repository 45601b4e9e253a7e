"""Events chanlog writes about itself."""

from __future__ import annotations

from typing import ClassVar

import attrs

from chanlog import fields
from chanlog.events.base import Event

__all__ = ["SnapshotCreated"]


@attrs.define(frozen=True, slots=True, kw_only=True)
class SnapshotCreated(Event):
    """A snapshot of the projections as of ``snapshot_offset`` (events ``[0, offset)``) was
    stored; ``snapshot_hash`` is the keccak256 of the snapshot bytes. Projections ignore it."""

    event_type: ClassVar[str] = "snapshot-created"
    group: ClassVar[str] = "system"
    stream_fields: ClassVar[tuple[str, ...]] = ()

    snapshot_offset: int = attrs.field(validator=fields.uint)
    snapshot_hash: str = attrs.field(validator=fields.bytes32)
    objective_count: int = attrs.field(validator=fields.uint)
    channel_count: int = attrs.field(validator=fields.uint)
