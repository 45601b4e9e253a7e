"""Storage backends: the protocol every backend implements, its optional capabilities, and
the built-in in-memory backend (``chanlog.backends.sqlite`` is imported on demand, so that
``import chanlog.backends`` does not load sqlite3)."""

from __future__ import annotations

from chanlog.backends.base import Backend, BackendFactory, WriteTransaction
from chanlog.backends.capabilities import (
    AppendsUnlessKnown,
    CountsStreams,
    ExposesStreamIndex,
    FileBacked,
    FindsMany,
    MayBeReadOnly,
    ReadsStreamPayloads,
    RemembersHead,
    SavesSnapshotsInTransaction,
    transaction_capabilities,
)
from chanlog.backends.memory import MemoryBackend

__all__ = [
    "AppendsUnlessKnown",
    "Backend",
    "BackendFactory",
    "CountsStreams",
    "ExposesStreamIndex",
    "FileBacked",
    "FindsMany",
    "MayBeReadOnly",
    "MemoryBackend",
    "ReadsStreamPayloads",
    "RemembersHead",
    "SavesSnapshotsInTransaction",
    "WriteTransaction",
    "transaction_capabilities",
]
