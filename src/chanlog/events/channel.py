"""Off-chain channel events: creation, signed and received states, support, finalization."""

from __future__ import annotations

from typing import ClassVar

import attrs

from chanlog import fields
from chanlog.events.base import Event

__all__ = [
    "ChannelCreated",
    "ChannelFinalized",
    "StateReceived",
    "StateSigned",
    "StateSupportedUpdated",
]

_CHANNEL: tuple[str, ...] = ("channel_id",)


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChannelCreated(Event):
    """A channel's fixed part. ``challenge_duration`` is in seconds (>= 1)."""

    event_type: ClassVar[str] = "channel-created"
    group: ClassVar[str] = "channel"
    stream_fields: ClassVar[tuple[str, ...]] = _CHANNEL

    channel_id: str = attrs.field(validator=fields.bytes32)
    participants: tuple[str, ...] = attrs.field(
        converter=fields.to_tuple, validator=fields.participants()
    )
    channel_nonce: int | None = attrs.field(default=None, validator=fields.optional(fields.uint))
    app_definition: str | None = attrs.field(
        default=None, validator=fields.optional(fields.address)
    )
    challenge_duration: int = attrs.field(validator=fields.positive_int)


@attrs.define(frozen=True, slots=True, kw_only=True)
class StateSigned(Event):
    """We signed a state of the channel at ``turn_num``."""

    event_type: ClassVar[str] = "state-signed"
    group: ClassVar[str] = "channel"
    stream_fields: ClassVar[tuple[str, ...]] = _CHANNEL

    channel_id: str = attrs.field(validator=fields.bytes32)
    turn_num: int = attrs.field(validator=fields.uint)
    state_hash: str = attrs.field(validator=fields.bytes32)
    signer: str = attrs.field(validator=fields.address)
    signature: str = attrs.field(validator=fields.signature)
    is_final: bool | None = attrs.field(default=None, validator=fields.optional(fields.bool_))
    app_data_hash: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))


@attrs.define(frozen=True, slots=True, kw_only=True)
class StateReceived(Event):
    """A peer's signature on a state arrived."""

    event_type: ClassVar[str] = "state-received"
    group: ClassVar[str] = "channel"
    stream_fields: ClassVar[tuple[str, ...]] = _CHANNEL

    channel_id: str = attrs.field(validator=fields.bytes32)
    turn_num: int = attrs.field(validator=fields.uint)
    state_hash: str = attrs.field(validator=fields.bytes32)
    signer: str = attrs.field(validator=fields.address)
    signature: str = attrs.field(validator=fields.signature)
    is_final: bool | None = attrs.field(default=None, validator=fields.optional(fields.bool_))
    peer_id: str | None = attrs.field(
        default=None, validator=fields.optional(fields.text(min_length=1, max_length=256))
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class StateSupportedUpdated(Event):
    """A new supported state (enough signatures). ``prev_supported_turn`` absent means the
    channel had no supported state before."""

    event_type: ClassVar[str] = "state-supported-updated"
    group: ClassVar[str] = "channel"
    stream_fields: ClassVar[tuple[str, ...]] = _CHANNEL

    channel_id: str = attrs.field(validator=fields.bytes32)
    supported_turn: int = attrs.field(validator=fields.uint)
    state_hash: str = attrs.field(validator=fields.bytes32)
    num_signatures: int | None = attrs.field(
        default=None, validator=fields.optional(fields.positive_int)
    )
    prev_supported_turn: int | None = attrs.field(
        default=None, validator=fields.optional(fields.uint)
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChannelFinalized(Event):
    """A final state is supported off-chain; no further states may be signed."""

    event_type: ClassVar[str] = "channel-finalized"
    group: ClassVar[str] = "channel"
    stream_fields: ClassVar[tuple[str, ...]] = _CHANNEL

    channel_id: str = attrs.field(validator=fields.bytes32)
    final_turn: int = attrs.field(validator=fields.uint)
    final_state_hash: str = attrs.field(validator=fields.bytes32)
