"""Whether a runner's next read follows its last: the first record of each batch must link,
by its chain hash, to the last record the runner examined. When it does not, the log lost
records the runner had passed and others took their offsets (ADR 0047), which the log's
length alone does not show once it has grown again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from chanlog.backends.base import Backend
from chanlog.folded_chain import links_to
from chanlog.records import StoredRecord

__all__ = ["ReadContinuity"]


class ReadContinuity:
    """The offset and chain hash of the last record a runner examined."""

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        self._seen: tuple[int, bytes] | None = None

    def read(self, backend: Backend, start: int, end: int) -> Iterator[StoredRecord] | None:
        """The log's records ``[start, end)``; ``None`` when the first does not follow the
        last record examined (not checked when that record was not at ``start - 1``)."""
        rows = iter(backend.read(start, end))
        seen = self._seen
        if seen is None or seen[0] != start - 1:
            return rows
        first = next(rows, None)
        if first is None:
            return rows
        return itertools.chain((first,), rows) if links_to(seen[1], first) else None

    def examined(self, last: StoredRecord | None) -> None:
        """The runner examined every record of its read up to ``last``, and will go on from
        the one after it (``None``: from somewhere else, not checked)."""
        self._seen = None if last is None else (last.offset, last.chain_hash)
