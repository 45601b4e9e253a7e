"""What the log holds: records as the store hands them out and as backends keep them."""

from __future__ import annotations

import attrs

from chanlog.events.base import Event

__all__ = ["Head", "RecordedEvent", "StoredRecord", "StoredSnapshot", "Witness"]


@attrs.frozen(slots=True)
class RecordedEvent:
    """An event at its place in the log.

    Attributes:
        offset: 0-based, dense position in commit order.
        event_id: ``0x`` + 64 hex digits, the content address of the event.
        event: the decoded event.
        chain_hash: ``0x`` + 64 hex digits: ``keccak256(previous chain hash || event id)``.
    """

    offset: int
    event_id: str
    event: Event
    chain_hash: str

    @property
    def event_type(self) -> str:
        """The wire name of the event."""
        return self.event.event_type

    @property
    def timestamp_ms(self) -> int:
        """The event's own timestamp (chanlog adds no clock of its own)."""
        return self.event.timestamp_ms


@attrs.frozen(slots=True)
class StoredRecord:
    """A record as a backend stores it: everything needed to rebuild and verify it.

    ``payload`` is the event serialized by the store's serializer (canonical JSON by
    default); ``event_id`` and ``chain_hash`` are raw 32-byte digests.
    """

    offset: int
    event_id: bytes
    event_type: str
    streams: tuple[str, ...]
    payload: bytes
    chain_hash: bytes


@attrs.frozen(slots=True)
class Head:
    """The end of the log: how many records it has and the last chain hash."""

    length: int
    chain_hash: bytes


@attrs.frozen(slots=True)
class StoredSnapshot:
    """Projection states as of ``offset`` (events ``[0, offset)`` folded).

    ``versions`` maps each projection name to the schema version its state was written with;
    ``data`` is the serialized snapshot and ``snapshot_hash`` its keccak256.
    """

    offset: int
    versions: dict[str, int]
    data: bytes
    snapshot_hash: bytes


@attrs.frozen(slots=True)
class Witness:
    """Evidence of a head the log once had: the record at ``offset`` had ``chain_hash``.

    ``verify`` holds the log against every witness it is given or finds (ADR 0024): the log
    must reach ``offset`` and agree there, or records were cut or changed.

    Attributes:
        offset: the offset of the last record the witness saw.
        chain_hash: that record's raw 32-byte chain hash.
        source: who saw it (``"--expect-head"``, ``"replica node.db"``...), for messages.
    """

    offset: int
    chain_hash: bytes
    source: str = "a recorded head"

    def __str__(self) -> str:
        return f"{self.offset}:0x{self.chain_hash.hex()}"
