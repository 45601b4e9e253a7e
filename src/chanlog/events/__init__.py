"""The 21 built-in event types (DESIGN section 2) and their base class."""

from __future__ import annotations

from chanlog.events.base import Event, now_ms
from chanlog.events.chain import (
    AllocationUpdated,
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    DepositDetected,
    WithdrawCompleted,
)
from chanlog.events.channel import (
    ChannelCreated,
    ChannelFinalized,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
)
from chanlog.events.messaging import (
    DROP_ERROR_CODES,
    MessageAcked,
    MessageDropped,
    MessageReceived,
    MessageSent,
)
from chanlog.events.objective import (
    OBJECTIVE_TYPES,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    ObjectiveRejected,
)
from chanlog.events.system import SnapshotCreated

__all__ = [
    "BUILTIN_EVENT_TYPES",
    "DROP_ERROR_CODES",
    "OBJECTIVE_TYPES",
    "AllocationUpdated",
    "ChainEvent",
    "ChallengeCleared",
    "ChallengeRegistered",
    "ChannelConcluded",
    "ChannelCreated",
    "ChannelFinalized",
    "DepositDetected",
    "Event",
    "MessageAcked",
    "MessageDropped",
    "MessageReceived",
    "MessageSent",
    "ObjectiveApproved",
    "ObjectiveCompleted",
    "ObjectiveCranked",
    "ObjectiveCreated",
    "ObjectiveRejected",
    "SnapshotCreated",
    "StateReceived",
    "StateSigned",
    "StateSupportedUpdated",
    "WithdrawCompleted",
    "now_ms",
]

BUILTIN_EVENT_TYPES: tuple[type[Event], ...] = (
    ObjectiveCreated,
    ObjectiveApproved,
    ObjectiveRejected,
    ObjectiveCranked,
    ObjectiveCompleted,
    ChannelCreated,
    StateSigned,
    StateReceived,
    StateSupportedUpdated,
    ChannelFinalized,
    DepositDetected,
    AllocationUpdated,
    ChallengeRegistered,
    ChallengeCleared,
    ChannelConcluded,
    WithdrawCompleted,
    MessageSent,
    MessageReceived,
    MessageAcked,
    MessageDropped,
    SnapshotCreated,
)
"""Every built-in event class, in catalog order (registered through the event-types hook)."""
