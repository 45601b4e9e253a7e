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

    A transaction may also offer two optional methods, which the store uses when present
    (the conformance suite checks them where they exist):

    - ``find_many(event_ids: Sequence[bytes]) -> list[int | None]``: the offsets of many
      ids (``None`` where absent), in order, in one round trip. The store uses it to look
      up the ids of a batch (the SQLite and PostgreSQL backends have it).
    - ``append_unless_known(records: Sequence[StoredRecord]) -> bool``: append like
      :meth:`append` and return True; or, when an event id among ``records`` is already in
      the log, append none of them and return False, leaving the transaction usable. The
      store then writes optimistically, letting the backend's unique index find redelivered
      events, and looks ids up only when this returns False (ADR 0022; the SQLite backend
      has it).
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

    A backend may also offer ``read_stream_payloads(stream, start=0, end=None)``: the same
    records as :meth:`read_stream`, as ``(offset, event_type, payload)`` tuples.
    Reconstruction folds over it when present, sparing a :class:`StoredRecord` (and a
    chain-hash copy) per event.
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
    its configuration options (keyword arguments from ``[backend]`` in chanlog.toml)."""

    def __call__(self, **options: Any) -> Backend: ...
