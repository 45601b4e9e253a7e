"""Appends that must land at given offsets: what an exact copy of another log needs
(ADR 0032, :mod:`chanlog.copying`).

An ordinary append goes wherever the log ends, skips events the log already holds, and may
be followed by an automatic snapshot. A copy must reproduce the offsets, so its appends are
checked inside the write transaction, against the head read under the writer lock: the
log must end exactly where the events begin, and none of them may be in it already.
Otherwise the transaction is rolled back and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.appending import AppendPipeline, CommitResult, Encoded
from chanlog.backends.base import Backend, WriteTransaction
from chanlog.backends.capabilities import save_snapshot_with
from chanlog.errors import ConcurrencyError
from chanlog.reading import check_offset
from chanlog.records import StoredSnapshot

__all__ = ["write_at"]

Work = Callable[[WriteTransaction, list[Encoded], Any, bool], CommitResult]
"""The store's write-transaction work: ``(transaction, encoded, expected, batch)``."""


def write_at(
    pipeline: AppendPipeline,
    offset: int,
    snapshot: StoredSnapshot | None = None,
    backend: Backend | None = None,
) -> Work:
    """The write-transaction work appending encoded events at ``offset``, ``offset + 1``,
    ... or raising :class:`~chanlog.errors.ConcurrencyError` (``stream`` is ``""``: the log
    as a whole), which rolls the transaction back.

    ``snapshot`` (the one the first event announces) is stored in the same transaction,
    or, where ``backend``'s transactions cannot store snapshots, through ``backend`` just
    before the events are written (ADR 0055): the announcement never commits without it.

    Raises:
        InvalidArgument: ``offset`` is not an int >= 0.
    """
    check_offset("offset", offset)

    def write(
        transaction: WriteTransaction, encoded: list[Encoded], _expected: Any, _batch: bool
    ) -> CommitResult:
        length = transaction.head.length
        if length != offset:
            raise ConcurrencyError(
                f"the log holds {length} records, so records cannot be appended at offset "
                f"{offset} (nothing was written)",
                stream="",
                expected=offset,
                actual=length,
            )
        if snapshot is not None:
            save_snapshot_with(transaction, backend, snapshot)
        result = pipeline.write(transaction, encoded, None, True)
        for index, placed in enumerate(result.offsets):
            if placed != offset + index:
                raise ConcurrencyError(
                    f"event {encoded[index].event.event_id} is already in the log at offset "
                    f"{placed}, so it cannot be appended at offset {offset + index} (nothing "
                    "was written)",
                    stream="",
                    expected=offset + index,
                    actual=placed,
                )
        return result

    return write
