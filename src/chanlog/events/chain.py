"""On-chain events observed by the chain watcher. Each carries its chain position
(``block_num``, ``tx_index``), which must strictly increase per channel."""

from __future__ import annotations

from typing import ClassVar

import attrs

from chanlog import fields
from chanlog.events.base import Event

__all__ = [
    "AllocationUpdated",
    "ChainEvent",
    "ChallengeCleared",
    "ChallengeRegistered",
    "ChannelConcluded",
    "DepositDetected",
    "WithdrawCompleted",
]


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChainEvent(Event):
    """Fields shared by every chain event."""

    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)
    group: ClassVar[str] = "chain"

    channel_id: str = attrs.field(validator=fields.bytes32)
    block_num: int = attrs.field(validator=fields.uint)
    tx_index: int = attrs.field(validator=fields.uint)
    tx_hash: str | None = attrs.field(default=None, validator=fields.optional(fields.bytes32))


@attrs.define(frozen=True, slots=True, kw_only=True)
class DepositDetected(ChainEvent):
    """Funds for ``asset`` arrived; ``now_held`` is the adjudicator's new holding."""

    event_type: ClassVar[str] = "deposit-detected"

    asset: str = attrs.field(validator=fields.address)
    amount_deposited: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)
    now_held: int | None = attrs.field(
        default=None, validator=fields.optional(fields.amount), metadata=fields.AMOUNT
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class AllocationUpdated(ChainEvent):
    """The adjudicator's holding of ``asset`` changed to ``new_amount``."""

    event_type: ClassVar[str] = "allocation-updated"

    asset: str = attrs.field(validator=fields.address)
    new_amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChallengeRegistered(ChainEvent):
    """A challenge was registered on chain; it finalizes at ``finalization_time`` (unix s)."""

    event_type: ClassVar[str] = "challenge-registered"

    turn_num_record: int = attrs.field(validator=fields.uint)
    finalization_time: int = attrs.field(validator=fields.uint)
    challenger: str = attrs.field(validator=fields.address)
    is_final: bool | None = attrs.field(default=None, validator=fields.optional(fields.bool_))
    candidate_state_hash: str | None = attrs.field(
        default=None, validator=fields.optional(fields.bytes32)
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChallengeCleared(ChainEvent):
    """The active challenge was answered with a state of a higher turn."""

    event_type: ClassVar[str] = "challenge-cleared"

    new_turn_num_record: int = attrs.field(validator=fields.uint)


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChannelConcluded(ChainEvent):
    """The channel was concluded on chain; withdrawals may follow."""

    event_type: ClassVar[str] = "channel-concluded"

    finalized_at_turn: int | None = attrs.field(
        default=None, validator=fields.optional(fields.uint)
    )


@attrs.define(frozen=True, slots=True, kw_only=True)
class WithdrawCompleted(ChainEvent):
    """``recipient`` withdrew ``amount`` of ``asset``."""

    event_type: ClassVar[str] = "withdraw-completed"

    recipient: str = attrs.field(validator=fields.address)
    asset: str = attrs.field(validator=fields.address)
    amount: int = attrs.field(validator=fields.amount, metadata=fields.AMOUNT)
