"""What the tests of a log that lost records share: a backup taken under a running node, its
restore, and a handler that keeps its own position (ADR 0043, ADR 0047)."""

from __future__ import annotations

import chanlog
from chanlog.backends.memory import MemoryBackend


def backup(backend: MemoryBackend, length: int) -> MemoryBackend:
    """A backup taken when the log held ``length`` records: those records and the snapshots
    before them, verbatim."""
    copy = MemoryBackend()
    with copy.write() as transaction:
        transaction.append(list(backend.read(0, length)))
        for offset, _size in backend.snapshot_sizes():
            snapshot = backend.latest_snapshot(before=offset)
            if snapshot is not None and offset <= length:
                transaction.save_snapshot(snapshot)
    return copy


def restore(backend: MemoryBackend, copy: MemoryBackend) -> None:
    """What restoring a backup under a running node does to the backend: it now holds the
    backup's records, and nothing after them."""
    vars(backend).update(vars(copy))


class Mirror:
    """A handler that applies records outside the log and keeps its own position."""

    def __init__(self) -> None:
        self.applied: list[int] = []

    def __call__(self, record: chanlog.RecordedEvent) -> None:
        self.applied.append(record.offset)

    def position(self, consumer: str) -> int | None:
        return len(self.applied) or None
