"""Peer messaging events: what was sent, received, acknowledged or dropped."""

from __future__ import annotations

from typing import ClassVar

import attrs

from chanlog import fields
from chanlog.events.base import Event

__all__ = [
    "DROP_ERROR_CODES",
    "MessageAcked",
    "MessageDropped",
    "MessageReceived",
    "MessageSent",
]

DROP_ERROR_CODES = (
    "decode_failed",
    "signature_invalid",
    "channel_unknown",
    "payload_invalid",
    "replay_attack",
)

_peer_id = fields.text(min_length=1, max_length=256)


@attrs.define(frozen=True, slots=True, kw_only=True)
class MessageSent(Event):
    """We sent ``message_id`` to ``peer_id`` for ``objective_id``."""

    event_type: ClassVar[str] = "message-sent"
    group: ClassVar[str] = "messaging"
    stream_fields: ClassVar[tuple[str, ...]] = ("message_id", "objective_id")

    message_id: str = attrs.field(validator=fields.bytes32)
    peer_id: str = attrs.field(validator=_peer_id)
    objective_id: str = attrs.field(validator=fields.bytes32)
    payload_type: str | None = attrs.field(
        default=None, validator=fields.optional(fields.text(min_length=1, max_length=128))
    )
    payload_size_bytes: int | None = attrs.field(
        default=None, validator=fields.optional(fields.uint)
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class MessageReceived(Event):
    """``peer_id`` sent us ``message_id`` for ``objective_id`` (which may be new to us)."""

    event_type: ClassVar[str] = "message-received"
    group: ClassVar[str] = "messaging"
    stream_fields: ClassVar[tuple[str, ...]] = ("message_id", "objective_id")

    message_id: str = attrs.field(validator=fields.bytes32)
    peer_id: str = attrs.field(validator=_peer_id)
    objective_id: str = attrs.field(validator=fields.bytes32)
    payload_type: str | None = attrs.field(
        default=None, validator=fields.optional(fields.text(min_length=1, max_length=128))
    )
    payload_size_bytes: int | None = attrs.field(
        default=None, validator=fields.optional(fields.uint)
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class MessageAcked(Event):
    """``peer_id`` acknowledged our ``message_id``."""

    event_type: ClassVar[str] = "message-acked"
    group: ClassVar[str] = "messaging"
    stream_fields: ClassVar[tuple[str, ...]] = ("message_id",)

    message_id: str = attrs.field(validator=fields.bytes32)
    peer_id: str = attrs.field(validator=_peer_id)
    roundtrip_ms: int | None = attrs.field(default=None, validator=fields.optional(fields.uint))


@attrs.define(frozen=True, slots=True, kw_only=True)
class MessageDropped(Event):
    """An inbound message from ``peer_id`` was discarded, with a reason and an error code."""

    event_type: ClassVar[str] = "message-dropped"
    group: ClassVar[str] = "messaging"
    stream_fields: ClassVar[tuple[str, ...]] = ("message_id",)

    message_id: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))
    peer_id: str = attrs.field(validator=_peer_id)
    reason: str = attrs.field(validator=fields.text())
    error_code: str = attrs.field(validator=fields.one_of(*DROP_ERROR_CODES))
    payload_size_bytes: int | None = attrs.field(
        default=None, validator=fields.optional(fields.uint)
    )
