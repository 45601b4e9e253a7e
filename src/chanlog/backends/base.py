"""The storage backend contract (DESIGN section 6).

A backend keeps :class:`~chanlog.records.StoredRecord` rows and snapshots. The store never
assigns an offset on its own: it opens a :class:`WriteTransaction`, which holds the backend's
writer lock (a thread lock in memory, ``BEGIN IMMEDIATE`` in SQLite, a row lock in
PostgreSQL), reads the head *inside* that lock, and commits records whose offsets and chain
hashes follow from it. That is what keeps offsets dense and commit order equal to offset
order even when several processes share one log.

Every backend runs the conformance suite in :mod:`chanlog.testing`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = ["Backend", "BackendFactory", "WriteTransaction"]


class WriteTransaction(Protocol):
    """An exclusive write session. Leaving the context normally commits (durably, as the
    backend documents); leaving it with an exception rolls everything back.

    A transaction may offer more: :class:`~chanlog.backends.capabilities.FindsMany`,
    :class:`~chanlog.backends.capabilities.AppendsUnlessKnown` and
    :class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction` (see
    :mod:`chanlog.backends.capabilities`; the conformance suite checks each one a
    transaction has).
    """

    @property
    def head(self) -> Head:
        """The head of the log as of the moment the writer lock was taken."""
        ...

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        ...

    def stream_version(self, stream: str) -> int:
        """How many committed records belong to ``stream``."""
        ...

    def append(self, records: Sequence[StoredRecord]) -> None:
        """Stage records that continue the head, in order (offsets ``head.length ...``)."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Where records and snapshots live.

    A backend may offer more than this protocol: reading payloads lean
    (:class:`~chanlog.backends.capabilities.ReadsStreamPayloads`), listing its stream index
    (:class:`~chanlog.backends.capabilities.ExposesStreamIndex`), stored stream counts
    (:class:`~chanlog.backends.capabilities.CountsStreams`), a witness of its head
    (:class:`~chanlog.backends.capabilities.RemembersHead`) and a file
    (:class:`~chanlog.backends.capabilities.FileBacked`); see
    :mod:`chanlog.backends.capabilities`.

    A backend opened read-only (the factories' ``read_only=True``; it says so through
    :class:`~chanlog.backends.capabilities.MayBeReadOnly`) keeps every read and refuses
    every write with :class:`~chanlog.errors.StorageError`: entering :meth:`write`,
    :meth:`save_snapshot`, and the writing methods of its capabilities.
    """

    name: str
    """The registered name (``"memory"``, ``"sqlite"``, ...)."""

    shared: bool
    """True when other processes may append to the same log (the store then catches up
    inside each write transaction and can wait for appends made elsewhere)."""

    def head(self) -> Head:
        """The current head of the log."""
        ...

    def write(self) -> AbstractContextManager[WriteTransaction]:
        """Take the writer lock and open a transaction."""
        ...

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        """Records with ``start <= offset < end``, in order, streamed."""
        ...

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        """Records of ``stream`` with ``start <= offset < end``, in order, streamed."""
        ...

    def find(self, event_id: bytes) -> int | None:
        """The offset of the record with this event id, or ``None``."""
        ...

    def stream_version(self, stream: str) -> int:
        """How many records belong to ``stream``."""
        ...

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store a snapshot (replacing one at the same offset)."""
        ...

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        """The snapshot with the greatest offset ``<= before`` (any, when ``before`` is None)."""
        ...

    def wait(self, length: int, timeout: float) -> bool:
        """Block until the log is longer than ``length`` or ``timeout`` seconds pass; return
        whether it grew. In-process appends are announced by the store itself; this is how a
        reader learns of appends made by other processes."""
        ...

    def close(self) -> None:
        """Release files, connections and locks. Idempotent."""
        ...


class BackendFactory(Protocol):
    """What ``chanlog_register_backends`` registers: a callable building a backend from
    its configuration options (keyword arguments from ``[backend]`` in chanlog.toml).

    The built-in factories (and the PostgreSQL plugin's) all accept ``read_only: bool =
    False``: the log is opened for reading only, never created, and writes are refused
    with :class:`~chanlog.errors.StorageError`. Those that keep a log somewhere that may
    not exist yet also accept ``create: bool = True``: with ``False`` (and with
    ``read_only``) a missing log is a :class:`~chanlog.errors.NotFound` naming it rather
    than a new, empty one.
    """

    def __call__(self, **options: Any) -> Backend: ...
