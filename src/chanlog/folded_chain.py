"""Where a store's fold ends in the log's hash chain, and the chain hashes at the ends of its
recent writes and catch-ups.

A database that lost records a store had folded can hold as many records again, or more, by
the time the store looks: another process appended in their place. The log's length then
says nothing, but its chain hashes do: the record the log now holds where the store's fold
ends must have the chain hash the store folded there (ADR 0047).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from chanlog.backends.base import Backend
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.records import StoredRecord

__all__ = ["MARKS", "FoldedChain", "chain_hash_at", "links_to"]

MARKS = 64
"""How many recent ends a store keeps: the writes and catch-ups back to which it can tell
where the log parted from what it folded."""


def chain_hash_at(backend: Backend, offset: int) -> bytes | None:
    """The chain hash of the log's record at ``offset``; ``None`` past its end."""
    for stored in backend.read(offset, offset + 1):
        return stored.chain_hash
    return None


def links_to(previous: bytes, record: StoredRecord) -> bool:
    """Whether ``record``'s chain hash follows ``previous``, the chain hash of the record
    before it: ``keccak256(previous || event id)``."""
    return chain_next(previous, record.event_id) == record.chain_hash


class FoldedChain:
    """The chain hash of the last record a store folded, and of the last records of its
    recent writes and catch-ups (oldest first)."""

    __slots__ = ("_marks", "hash")

    def __init__(self) -> None:
        self.hash: bytes | None = GENESIS_CHAIN_HASH
        """The chain hash of the last record folded (the genesis hash before the first);
        ``None`` when it is not known (the fold started from a snapshot, or failed)."""
        self._marks: deque[tuple[int, bytes]] = deque(maxlen=MARKS)

    def passed(self, offset: int, chain_hash: bytes) -> None:
        """The fold ends at the record at ``offset``, whose chain hash is ``chain_hash``."""
        self.hash = chain_hash
        self._marks.append((offset, chain_hash))

    def restart(self, chain_hash: bytes | None) -> None:
        """The fold starts again: from the log's start (the genesis hash) or from a
        snapshot (``None``: the chain hash there is not known yet)."""
        self.hash = chain_hash
        self._marks.clear()

    def continued_by(self, record: StoredRecord) -> bool:
        """Whether ``record``, the one after the fold's end, links to the chain hash folded
        there (always, when that hash is not known)."""
        previous = self.hash
        return previous is None or links_to(previous, record)

    def shared(self, chain_at: Callable[[int], bytes | None]) -> int:
        """How many of the log's first records the store can show it folded as the log
        holds them now: one past the newest kept end whose offset still has its chain hash
        in the log (``chain_at``: the log's chain hash at an offset, ``None`` past its end),
        0 when none has. A chain hash that matches vouches for every record before it, so
        the ends that match are the oldest ones and a binary search finds the newest."""
        marks = list(self._marks)
        low, high = 0, len(marks)
        while low < high:
            middle = (low + high) // 2
            offset, chain_hash = marks[middle]
            if chain_at(offset) == chain_hash:
                low = middle + 1
            else:
                high = middle
        return marks[low - 1][0] + 1 if low else 0
