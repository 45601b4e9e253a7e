"""chanlog: the event-sourcing foundation of a state-channels node.

An append-only, tamper-evident log of state-channel events, folded into objective and
channel state that anyone can replay, at any offset, with the same result.

Quick start::

    import chanlog

    with chanlog.EventStore() as store:
        offset = store.append(chanlog.ObjectiveCreated(
            objective_id="0x" + "aa" * 32, objective_type="DirectFund", timestamp_ms=1,
        ))
"""

from __future__ import annotations

from chanlog.backends.base import Backend, WriteTransaction
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.checkpoints import EntityCheckpoints
from chanlog.codec import canonical_json, decode_event, to_payload
from chanlog.config import StoreConfig, load_config
from chanlog.config import open_store as open
from chanlog.errors import (
    ChanlogError,
    ConcurrencyError,
    ConfigError,
    DecodeError,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    NotFound,
    PluginError,
    StorageError,
)
from chanlog.events import (
    BUILTIN_EVENT_TYPES,
    AllocationUpdated,
    ChainEvent,
    ChallengeCleared,
    ChallengeRegistered,
    ChannelConcluded,
    ChannelCreated,
    ChannelFinalized,
    DepositDetected,
    Event,
    MessageAcked,
    MessageDropped,
    MessageReceived,
    MessageSent,
    ObjectiveApproved,
    ObjectiveCompleted,
    ObjectiveCranked,
    ObjectiveCreated,
    ObjectiveRejected,
    SnapshotCreated,
    StateReceived,
    StateSigned,
    StateSupportedUpdated,
    WithdrawCompleted,
)
from chanlog.plugins import PluginHost, default_host, hookimpl
from chanlog.projections import (
    ChannelProjection,
    ChannelState,
    EntityProjection,
    MessagesProjection,
    MessageState,
    ObjectiveProjection,
    ObjectiveState,
    Projection,
    ProjectionStage,
)
from chanlog.reconstruct import StateReconstructor
from chanlog.records import Head, RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.serializers import JsonSerializer, Serializer
from chanlog.snapshots import (
    EveryNEvents,
    Never,
    SnapshotManager,
    SnapshotPolicy,
    SnapshotView,
    open_snapshot,
)
from chanlog.store import EventStore
from chanlog.subscriptions import DeliveryFailure, Subscription
from chanlog.workload import Workload, WorkloadConfig

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_EVENT_TYPES",
    "AllocationUpdated",
    "Backend",
    "ChainEvent",
    "ChallengeCleared",
    "ChallengeRegistered",
    "ChanlogError",
    "ChannelConcluded",
    "ChannelCreated",
    "ChannelFinalized",
    "ChannelProjection",
    "ChannelState",
    "ConcurrencyError",
    "ConfigError",
    "DecodeError",
    "DeliveryFailure",
    "DepositDetected",
    "EntityCheckpoints",
    "EntityProjection",
    "Event",
    "EventStore",
    "EveryNEvents",
    "Head",
    "IntegrityError",
    "InvalidArgument",
    "InvalidEvent",
    "InvalidTransition",
    "JsonSerializer",
    "MemoryBackend",
    "MessageAcked",
    "MessageDropped",
    "MessageReceived",
    "MessageSent",
    "MessageState",
    "MessagesProjection",
    "Never",
    "NotFound",
    "ObjectiveApproved",
    "ObjectiveCompleted",
    "ObjectiveCranked",
    "ObjectiveCreated",
    "ObjectiveProjection",
    "ObjectiveRejected",
    "ObjectiveState",
    "PluginError",
    "PluginHost",
    "Projection",
    "ProjectionStage",
    "RecordedEvent",
    "Serializer",
    "SnapshotCreated",
    "SnapshotManager",
    "SnapshotPolicy",
    "SnapshotView",
    "SqliteBackend",
    "StateReceived",
    "StateReconstructor",
    "StateSigned",
    "StateSupportedUpdated",
    "StorageError",
    "StoreConfig",
    "StoredRecord",
    "StoredSnapshot",
    "Subscription",
    "WithdrawCompleted",
    "Workload",
    "WorkloadConfig",
    "WriteTransaction",
    "__version__",
    "canonical_json",
    "decode_event",
    "default_host",
    "hookimpl",
    "load_config",
    "open",
    "open_snapshot",
    "to_payload",
]
