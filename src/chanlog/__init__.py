"""chanlog: the event-sourcing foundation of a state-channels node.

An append-only, tamper-evident log of state-channel events, folded into objective and
channel state that anyone can replay, at any offset, with the same result.

Quick start::

    import chanlog

    with chanlog.EventStore() as store:
        offset = store.append(chanlog.ObjectiveCreated(
            objective_id="0x" + "aa" * 32, objective_type="DirectFund", timestamp_ms=1,
        ))

The top level is what a user of the store and a plugin author need: the events, the store
and ``open``, the errors, the records, the configuration, and the protocols a plugin
implements. Everything else lives in its submodule (``chanlog.backends.sqlite``,
``chanlog.projections``, ``chanlog.snapshots``, ``chanlog.codec``, ``chanlog.workload`` ...),
so ``import chanlog`` loads neither SQLite nor the workload generator nor the CLI.
"""

# No `from __future__ import annotations`: it would bind the public name `annotations` here.

from chanlog.backends.base import Backend, WriteTransaction
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
    LeaseHeld,
    NotFound,
    PluginError,
    StorageError,
)
from chanlog.events import (
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
from chanlog.plugins import PluginHost, hookimpl
from chanlog.projections import Projection, ProjectionStage
from chanlog.records import Head, RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.serializers import Serializer
from chanlog.snapshots import SnapshotPolicy
from chanlog.store import EventStore
from chanlog.subscriptions import Subscription

__version__ = "0.1.0"

__all__ = [
    "AllocationUpdated",
    "Backend",
    "ChainEvent",
    "ChallengeCleared",
    "ChallengeRegistered",
    "ChanlogError",
    "ChannelConcluded",
    "ChannelCreated",
    "ChannelFinalized",
    "ConcurrencyError",
    "ConfigError",
    "DecodeError",
    "DepositDetected",
    "Event",
    "EventStore",
    "Head",
    "IntegrityError",
    "InvalidArgument",
    "InvalidEvent",
    "InvalidTransition",
    "LeaseHeld",
    "MessageAcked",
    "MessageDropped",
    "MessageReceived",
    "MessageSent",
    "NotFound",
    "ObjectiveApproved",
    "ObjectiveCompleted",
    "ObjectiveCranked",
    "ObjectiveCreated",
    "ObjectiveRejected",
    "PluginError",
    "PluginHost",
    "Projection",
    "ProjectionStage",
    "RecordedEvent",
    "Serializer",
    "SnapshotCreated",
    "SnapshotPolicy",
    "StateReceived",
    "StateSigned",
    "StateSupportedUpdated",
    "StorageError",
    "StoreConfig",
    "StoredRecord",
    "StoredSnapshot",
    "Subscription",
    "WithdrawCompleted",
    "WriteTransaction",
    "hookimpl",
    "load_config",
    "open",
]
