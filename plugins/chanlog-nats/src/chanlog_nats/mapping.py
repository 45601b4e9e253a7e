"""How a committed record travels as a NATS message (ADR 0028), in one place for the relay,
the broker and the ingest.

- subject: the record's bus subject (``<prefix>.<group>.<event-type>.<entity>``);
- body: the event's canonical JSON, so any receiver recomputes the event id;
- headers: ``Nats-Msg-Id`` = ``<event id>:<offset>`` (JetStream's dedupe key),
  ``Chanlog-Offset``, ``Chanlog-Chain-Hash`` and ``Chanlog-Event-Type``.

The offset is part of the message id, not only a header of its own, so the id names one
record of one log: the same event at another offset (another node's log) is another message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from chanlog.errors import DecodeError
from chanlog.records import RecordedEvent

__all__ = [
    "CHAIN_HASH",
    "EVENT_TYPE",
    "EXPECTED_LAST_MSG_ID",
    "EXPECTED_LAST_SEQUENCE",
    "MSG_ID",
    "OFFSET",
    "Envelope",
    "headers_of",
    "msg_id",
    "over_max_payload",
    "read_envelope",
]

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
OFFSET = "Chanlog-Offset"
CHAIN_HASH = "Chanlog-Chain-Hash"
EVENT_TYPE = "Chanlog-Event-Type"

_HASH = re.compile(r"0x[0-9a-f]{64}")
_MSG_ID = re.compile(r"(0x[0-9a-f]{64}):(0|[1-9][0-9]{0,18})")


def msg_id(event_id: str, offset: int) -> str:
    """The ``Nats-Msg-Id`` of the record at ``offset`` with ``event_id``."""
    return f"{event_id}:{offset}"


def headers_of(record: RecordedEvent) -> dict[str, str]:
    """The headers of ``record``'s message (without the ordering guard)."""
    return {
        MSG_ID: f"{record.event_id}:{record.offset}",
        OFFSET: str(record.offset),
        CHAIN_HASH: record.chain_hash,
        EVENT_TYPE: record.event.event_type,
    }


@attrs.frozen
class Envelope:
    """What a message's headers claim about the record its body holds.

    Attributes:
        msg_id: the ``Nats-Msg-Id``.
        event_id: the event id it names.
        offset: the record's offset in the publishing node's log.
        chain_hash: the record's chain hash there.
        event_type: the event's wire name.
    """

    msg_id: str
    event_id: str
    offset: int
    chain_hash: str
    event_type: str


def read_envelope(headers: Mapping[str, str] | None) -> Envelope:
    """The claims of a chanlog message's headers.

    Raises:
        DecodeError: a header is missing or malformed, or the offset header disagrees with
            the message id (the message is not one chanlog published).
    """
    if not headers:
        raise DecodeError("the message has no headers (it was not published by chanlog)")
    missing = [name for name in (MSG_ID, OFFSET, CHAIN_HASH, EVENT_TYPE) if name not in headers]
    if missing:
        raise DecodeError(f"the message lacks the header(s) {', '.join(missing)}")
    match = _MSG_ID.fullmatch(headers[MSG_ID])
    if match is None:
        raise DecodeError(
            f"malformed {MSG_ID} {headers[MSG_ID]!r} (expected <0x + 64 hex event id>:<offset>)"
        )
    offset = int(match.group(2))
    if headers[OFFSET] != match.group(2):
        raise DecodeError(
            f"{OFFSET} {headers[OFFSET]!r} disagrees with {MSG_ID} {headers[MSG_ID]!r}"
        )
    chain_hash = headers[CHAIN_HASH]
    if _HASH.fullmatch(chain_hash) is None:
        raise DecodeError(f"malformed {CHAIN_HASH} {chain_hash!r}")
    event_type = headers[EVENT_TYPE]
    if not event_type:
        raise DecodeError(f"empty {EVENT_TYPE}")
    return Envelope(headers[MSG_ID], match.group(1), offset, chain_hash, event_type)


# Headers are measured only for a body this close to the limit: they are far smaller.
_HEADERS_HEADROOM = 64 * 1024


def over_max_payload(body: bytes, headers: Mapping[str, str], max_payload: int) -> bool:
    """Whether a server whose ``max_payload`` is ``max_payload`` refuses the message: it
    counts the headers (``NATS/1.0``, a line each, an empty line) with the body, and closes
    the connection over it. One comparison unless ``body`` is within 64 KiB of the limit."""
    if len(body) <= max_payload - _HEADERS_HEADROOM:
        return False
    size = len(body) + len(b"NATS/1.0\r\n\r\n")
    for key, value in headers.items():
        size += len(key.encode()) + len(value.encode()) + 4
    return size > max_payload
