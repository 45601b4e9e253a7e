"""Where a store's fold ends in the log's hash chain, and the chain hashes at the ends of its
recent writes and catch-ups.

A database that lost records a store had folded can hold as many records again, or more, by
the time the store looks: another process appended in their place. The log's length then
says nothing, but its chain hashes do: the record the log now holds where the store's fold
ends must have the chain hash the store folded there (ADR 0047).
"""

from __future__ import annotations

from collections.abc import Callable

from chanlog.backends.base import Backend
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.records import StoredRecord

__all__ = [
    "CATCH_UP_MARK_EVERY",
    "MARKS",
    "OLDER_MARKS",
    "FoldedChain",
    "another_record_at",
    "chain_hash_at",
    "links_to",
]

MARKS = 64
"""How many recent ends a store keeps at least (up to twice as many, retired 64 at a time):
the writes and catch-ups back to which it can tell exactly where the log parted from what
it folded."""

OLDER_MARKS = 32
"""How many older ends a store keeps, thinned so that the gaps between them grow with their
age: a log that parted further back is handed to subscribers again from a kept end at most
about the parting's age before it (0.55-0.8 of it, measured), not from offset 0 (ADR 0047)."""


CATCH_UP_MARK_EVERY = 1_024
"""A catch-up keeps the chain hash of each record whose offset is a multiple of this too, so
that a store that opened on a long log can place a parting older than its opening."""


def chain_hash_at(backend: Backend, offset: int) -> bytes | None:
    """The chain hash of the log's record at ``offset``; ``None`` past its end."""
    for stored in backend.read(offset, offset + 1):
        return stored.chain_hash
    return None


def another_record_at(backend: Backend, offset: int, chain_hash: bytes) -> bool:
    """Whether the log's record at ``offset`` is not the one whose chain hash is
    ``chain_hash`` (what a handler that keeps its own position applied last): ``False`` past
    the log's end, which the runner judges by the log's length."""
    found = chain_hash_at(backend, offset)
    return found is not None and found != chain_hash


def links_to(previous: bytes, record: StoredRecord) -> bool:
    """Whether ``record``'s chain hash follows ``previous``, the chain hash of the record
    before it: ``keccak256(previous || event id)``."""
    return chain_next(previous, record.event_id) == record.chain_hash


class FoldedChain:
    """The chain hash of the last record a store folded, and of the last records of its
    recent writes and catch-ups (oldest first), with a thinned ladder of older ones."""

    __slots__ = ("_marks", "_older", "hash")

    def __init__(self) -> None:
        self.hash: bytes | None = GENESIS_CHAIN_HASH
        """The chain hash of the last record folded (the genesis hash before the first);
        ``None`` when it is not known (the fold started from a snapshot, or failed)."""
        self._marks: list[tuple[int, bytes]] = []
        self._older: list[tuple[int, bytes]] = []

    def passed(self, offset: int, chain_hash: bytes) -> None:
        """The fold ends at the record at ``offset``, whose chain hash is ``chain_hash``."""
        self.hash = chain_hash
        self.mark(offset, chain_hash)

    def mark(self, offset: int, chain_hash: bytes) -> None:
        """Keep ``chain_hash``, the log's at ``offset``, as one the store folded there
        (offsets only grow)."""
        marks = self._marks
        marks.append((offset, chain_hash))
        if len(marks) > 2 * MARKS:  # once per MARKS ends: the hot path only appends
            self._retire(marks[:MARKS], offset)
            del marks[:MARKS]

    def _retire(self, retired: list[tuple[int, bytes]], newest: int) -> None:
        """Move the oldest of ``retired`` to the ladder of older ends; past
        :data:`OLDER_MARKS`, drop the older end whose loss makes the smallest gap for its
        age (``newest``: the offset of the newest end). The oldest is always kept: it
        vouches furthest back."""
        older = self._older
        older.append(retired[0])
        if len(older) > OLDER_MARKS:
            offsets = [offset for offset, _ in older]
            gaps = [
                (after - before) / (newest - after + 1)
                for before, after in zip(offsets, offsets[2:], strict=False)
            ]
            del older[1 + gaps.index(min(gaps))]

    def restart(self, chain_hash: bytes | None) -> None:
        """The fold starts again: from the log's start (the genesis hash) or from a
        snapshot (``None``: the chain hash there is not known yet)."""
        self.hash = chain_hash
        self._marks.clear()
        self._older.clear()

    def continued_by(self, record: StoredRecord) -> bool:
        """Whether ``record``, the one after the fold's end, links to the chain hash folded
        there (always, when that hash is not known)."""
        previous = self.hash
        return previous is None or links_to(previous, record)

    def kept(self) -> list[int]:
        """The offsets whose chain hashes are kept, oldest first."""
        return [offset for offset, _ in self._older + self._marks]

    def shared(self, chain_at: Callable[[int], bytes | None]) -> int:
        """How many of the log's first records the store can show it folded as the log
        holds them now: one past the newest kept end whose offset still has its chain hash
        in the log (``chain_at``: the log's chain hash at an offset, ``None`` past its end),
        0 when none has. A chain hash that matches vouches for every record before it, so
        the ends that match are the oldest ones and a binary search finds the newest."""
        marks = self._older + self._marks
        low, high = 0, len(marks)
        while low < high:
            middle = (low + high) // 2
            offset, chain_hash = marks[middle]
            if chain_at(offset) == chain_hash:
                low = middle + 1
            else:
                high = middle
        return marks[low - 1][0] + 1 if low else 0
