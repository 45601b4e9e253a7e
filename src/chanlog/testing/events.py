"""Deterministic, valid events and records for backend tests.

Every helper is a pure function of its arguments (timestamps included), so the same call gives
the same event ids in every process: a crash test's parent can predict what its child wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from chanlog import codec
from chanlog.events import MessageDropped, MessageSent
from chanlog.events.base import Event
from chanlog.hashing import chain_next, keccak256
from chanlog.records import Head, StoredRecord

__all__ = [
    "REFUSED_REASON",
    "bytes32_of",
    "message_sent",
    "offsets_of",
    "refused_event",
    "sample_events",
    "stored_records",
]

REFUSED_REASON = "refused by the conformance suite"
"""The ``reason`` of :func:`refused_event`; the suite's refusing projection rejects it."""


def bytes32_of(label: str) -> str:
    """A ``0x`` + 64 hex id derived from ``label`` (distinct labels, distinct ids)."""
    return "0x" + keccak256(label.encode()).hex()


def message_sent(number: int, *, objectives: int = 4, salt: str = "") -> MessageSent:
    """The ``number``-th sample event: a message-sent whose two streams are its message and
    one of ``objectives`` objectives. Every seventh has a non-ASCII peer id, so byte-exact
    storage of UTF-8 payloads is exercised too."""
    peer = f"pär-{number % 3}" if number % 7 == 3 else f"peer-{number % 3}"
    return MessageSent(
        message_id=bytes32_of(f"{salt}message:{number}"),
        peer_id=peer,
        objective_id=bytes32_of(f"{salt}objective:{number % objectives}"),
        payload_size_bytes=number,
        timestamp_ms=1_700_000_000_000 + number,
    )


def sample_events(
    count: int, *, start: int = 0, objectives: int = 4, salt: str = ""
) -> list[MessageSent]:
    """``count`` consecutive sample events, numbered from ``start``."""
    return [
        message_sent(number, objectives=objectives, salt=salt)
        for number in range(start, start + count)
    ]


def refused_event(number: int = 0) -> MessageDropped:
    """An event the suite's refusing projection rejects with ``InvalidTransition``."""
    return MessageDropped(
        message_id=bytes32_of(f"refused:{number}"),
        peer_id="peer-refused",
        reason=REFUSED_REASON,
        error_code="payload_invalid",
        timestamp_ms=1_700_000_000_000 + number,
    )


def stored_records(events: Iterable[Event], head: Head) -> list[StoredRecord]:
    """The records the store would write for ``events`` after ``head``: canonical JSON
    payloads, offsets from ``head.length``, chain hashes continuing ``head.chain_hash``."""
    records: list[StoredRecord] = []
    offset = head.length
    chain = head.chain_hash
    for event in events:
        canonical = bytes(codec.canonical_json(event))
        raw_id = bytes.fromhex(codec.event_id_of_canonical(event.event_type, canonical)[2:])
        chain = chain_next(chain, raw_id)
        records.append(
            StoredRecord(offset, raw_id, event.event_type, event.streams, canonical, chain)
        )
        offset += 1
    return records


def offsets_of(records: Sequence[StoredRecord]) -> list[int]:
    """The offsets of ``records``, in order."""
    return [record.offset for record in records]
