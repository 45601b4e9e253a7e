"""Optional backend capabilities, as small runtime-checkable protocols.

A backend implements :class:`~chanlog.backends.Backend`; it may also offer any of these.
The store checks for each once (per backend, or per transaction class) and falls back to the
plain contract where one is missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = [
    "AppendsUnlessKnown",
    "ExposesStreamIndex",
    "FileBacked",
    "FindsMany",
    "ReadsStreamPayloads",
    "RemembersHead",
    "SavesSnapshotsInTransaction",
]


@runtime_checkable
class FindsMany(Protocol):
    """A transaction that looks up many event ids in one round trip (fallback: one
    :meth:`~chanlog.backends.WriteTransaction.find` per id)."""

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offsets of ``event_ids`` (``None`` where absent), in order."""
        ...


@runtime_checkable
class AppendsUnlessKnown(Protocol):
    """A transaction whose unique index on event ids judges redelivered events (ADR 0022;
    fallback: the store looks every id up before it appends)."""

    def append_unless_known(self, records: Sequence[StoredRecord]) -> bool:
        """Append like ``append`` and return True; or, when an event id among ``records``
        is already in the log, append none and return False, leaving the transaction
        usable."""
        ...


@runtime_checkable
class SavesSnapshotsInTransaction(Protocol):
    """A transaction that stores a snapshot with the records it writes, so the snapshot and
    its ``snapshot-created`` event commit together (fallback: ``backend.save_snapshot``
    while the transaction is open, which a backend with one writer at a time cannot do)."""

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store ``snapshot`` when the transaction commits."""
        ...


@runtime_checkable
class ReadsStreamPayloads(Protocol):
    """A backend that reads one stream as bare ``(offset, event_type, payload)`` tuples,
    sparing reconstruction a record object per event (fallback: ``read_stream``)."""

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """The records of ``stream`` with ``start <= offset < end``, in order."""
        ...


@runtime_checkable
class ExposesStreamIndex(Protocol):
    """A backend whose per-stream reads rely on a derived index; ``verify`` proves the
    index agrees with the streams every payload declares (without it, ``verify`` checks
    ``read_stream`` against the payloads, one stream at a time)."""

    def stream_index(self) -> Iterator[tuple[str, int]]:
        """Every ``(stream, offset)`` pair of the index, ordered by offset, then stream."""
        ...


@runtime_checkable
class RemembersHead(Protocol):
    """A backend that keeps a head of the log where cutting rows out of the log does not
    reach it: a witness ``verify`` holds the log against (ADR 0024)."""

    def remembered_head(self) -> Head | None:
        """The head last remembered, or ``None`` when none was."""
        ...

    def remember_head(self, head: Head) -> None:
        """Remember ``head`` (a head the log has had)."""
        ...


@runtime_checkable
class FileBacked(Protocol):
    """A backend whose log is one file (configuration resolves the path against the
    configuration file's directory; the CLI names it)."""

    path: Path
