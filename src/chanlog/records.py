"""What the log holds: records as the store hands them out and as backends keep them."""

from __future__ import annotations

import attrs

from chanlog.events.base import Event

__all__ = [
    "ConsumerState",
    "Head",
    "ParkedRecord",
    "PositionMove",
    "RecordedEvent",
    "StoredRecord",
    "StoredSnapshot",
    "Witness",
    "storable_error",
]


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


@attrs.frozen
class ConsumerState:
    """A durable consumer as its backend keeps it, next to the log (DESIGN section 10).

    Attributes:
        name: the consumer's name (unique per log).
        position: the next offset it examines: every record before it was handled,
            parked or did not match its subjects.
        subjects: the subject patterns it matches, as last registered.
        handled: how many records its handler has handled successfully, in all.
        parked: how many parked records it keeps.
        lease_holder: the runner that holds its lease, or ``None``.
        lease_expires_at: when that lease expires (unix seconds, the backend's clock).
        last_error: the latest failure that still stands, if any: the error of a record
            still parked, or the reason a handler gave for its records waiting; a record's
            error ends when it leaves the parked list (ADR 0054).
        updated_at: when it last changed (unix seconds, the backend's clock).
    """

    name: str
    position: int
    subjects: tuple[str, ...]
    handled: int = 0
    parked: int = 0
    lease_holder: str | None = None
    lease_expires_at: float | None = None
    last_error: str | None = None
    updated_at: float = 0.0


def storable_error(error: str) -> str:
    """``error`` as every backend keeps it: each NUL written as the four characters
    ``\\x00`` (PostgreSQL's text cannot hold a NUL, and a handler's error may quote a
    payload's text; ADR 0070). Text without a NUL is kept as it is."""
    return error.replace("\x00", "\\x00") if "\x00" in error else error


def _storable_error_or_none(error: str | None) -> str | None:
    return None if error is None else storable_error(error)


@attrs.frozen
class ParkedRecord:
    """A record a consumer's handler failed on ``attempts`` times: kept, with the error,
    until it is replayed or dropped (nothing is skipped silently).

    Attributes:
        consumer: the consumer's name.
        offset: the record's offset in the log.
        event_id: its event id (``0x`` + 64 hex digits).
        event_type: its wire name.
        attempts: how many times it was handed to the handler.
        error: the last error, as text (:func:`storable_error`: a NUL written out).
        parked_at: when it was parked (unix seconds).
        replay: True once a replay is requested: the consumer's runner hands it to the
            handler again before going on.
    """

    consumer: str
    offset: int
    event_id: str
    event_type: str
    attempts: int
    error: str = attrs.field(converter=storable_error)
    parked_at: float
    replay: bool = False


@attrs.frozen
class PositionMove:
    """What a consumer's runner commits: a new position, with what happened on the way.

    Attributes:
        consumer: the consumer's name.
        holder: the runner, which must hold the consumer's lease.
        position: the new position (never below the current one).
        handled: records handled since the previous move (added to the count).
        lease_ttl: seconds the lease is renewed for by this move.
        parked: records parked on the way (replacing a parked record at the same offset).
        unparked: offsets of parked records that were replayed successfully (removed).
        error: the latest error on the way (``None`` leaves the last one as it is, unless
            it is the error of a record ``unparked`` takes off the parked list; ``""`` ends
            it). An ended last error gives way to the error of the record parked most
            recently among those still parked, or to none (ADR 0054). A NUL in it is
            written out (:func:`storable_error`).
    """

    consumer: str
    holder: str
    position: int
    handled: int = 0
    lease_ttl: float = 15.0
    parked: tuple[ParkedRecord, ...] = ()
    unparked: tuple[int, ...] = ()
    error: str | None = attrs.field(default=None, converter=_storable_error_or_none)
