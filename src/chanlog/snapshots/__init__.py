"""Snapshots: projection states as of an offset, taken by policy plugins, so restarts and
reconstruction replay only the tail of the log."""

from __future__ import annotations

from chanlog.snapshots.codec import SNAPSHOT_FORMAT, encode_snapshot
from chanlog.snapshots.manager import SnapshotManager
from chanlog.snapshots.policies import DEFAULT_SNAPSHOT_EVERY, EveryNEvents, Never, SnapshotPolicy
from chanlog.snapshots.view import SnapshotView, decode_snapshot, open_snapshot

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "SNAPSHOT_FORMAT",
    "EveryNEvents",
    "Never",
    "SnapshotManager",
    "SnapshotPolicy",
    "SnapshotView",
    "decode_snapshot",
    "encode_snapshot",
    "open_snapshot",
]
