"""verify run beside a writer of the same log: the writer commits (records, a snapshot of
the end, a snapshot of an earlier offset) right after verify has read the log's length, as
another process would. Shared by the backends' tests (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chanlog.backends.base import Backend
from chanlog.records import Head
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference
from chanlog.store import EventStore
from chanlog.workload import Workload

__all__ = [
    "Interleaved",
    "events",
    "verify_beside_a_retake",
    "verify_beside_a_writer",
    "write_meanwhile",
]


class Interleaved:
    """``backend`` as a reader sees it, with ``meanwhile`` run right after the first
    :meth:`head` once :meth:`arm`-ed: what another writer commits just after verify read
    the log's length."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._meanwhile: Callable[[], None] | None = None

    def arm(self, meanwhile: Callable[[], None]) -> None:
        """Run ``meanwhile`` after the next :meth:`head`."""
        self._meanwhile = meanwhile

    def head(self) -> Head:
        head = self._backend.head()
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return head

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def events() -> list[Any]:
    """A node's traffic (channels funded and updated, objectives, messages): more than
    120 events, in an order the projections accept."""
    traffic = Workload(seed=7, channels=4, turns=6).events()
    assert len(traffic) > 120
    return traffic


def write_meanwhile(writer: EventStore, traffic: list[Any]) -> Callable[[], None]:
    """What the other writer commits: ``traffic``, with a snapshot of an earlier offset
    in the middle of it and one of the end after it."""

    def meanwhile() -> None:
        half = len(traffic) // 2
        writer.append_batch(traffic[:half])
        writer.snapshot(len(writer) - half)
        writer.append_batch(traffic[half:])
        writer.snapshot()

    return meanwhile


def verify_beside_a_writer(writer: EventStore, backend: Backend) -> None:
    """Verify the log of ``writer`` through ``backend`` (a reader's handle on it) while
    the writer commits records and two snapshots right after verify read the log's
    length: verify passes, for the length it read, and for the whole log the next time."""
    traffic = events()
    writer.append_batch(traffic[:60])
    writer.snapshot()
    reader_backend = Interleaved(backend)
    with EventStore(reader_backend, projections=[], read_only=True) as reader:
        reader_backend.arm(write_meanwhile(writer, traffic[60:120]))
        assert reader.verify() == 61  # the log as long as it was when verify began
        assert len(writer) == 61 + 60 + 2
        assert reader.verify() == len(writer)  # and all of it the next time


def verify_beside_a_retake(first: Backend, second: Backend, reader: Backend) -> None:
    """Verify the log through ``reader`` while a writer takes again a snapshot at an offset
    whose announcement verify has read (``chanlog snapshot --at``): the snapshot there is
    another (whole, where the pruned one was incremental), announced past the length
    verify read. ``first`` and ``second`` are two writers' handles on the log (ADR 0056)."""
    keep_all = EveryNEvents(n=10**9, keep=0)
    node = EventStore(first, snapshot_policy=keep_all)
    other = EventStore(second, snapshot_policy=EveryNEvents(n=10**9, keep=0, incremental=False))
    traffic = events()
    node.append_batch(Workload(channels=30, turns=1, seed=9).events())  # idle channels
    node.snapshot()
    node.append_batch(traffic[:10])
    pruned = node.snapshot()
    assert base_reference(pruned) is not None  # incremental: a whole one differs
    other.append_batch(traffic[10:20])
    other.snapshot()
    assert pruned.offset in other.prune_snapshots(keep=1)
    interleaved = Interleaved(reader)
    with EventStore(interleaved, projections=[], read_only=True) as verifier:
        length = reader.head().length
        retaken: list[bytes] = []
        interleaved.arm(lambda: retaken.append(node.snapshot(pruned.offset).snapshot_hash))
        assert verifier.verify() == length
        assert retaken and retaken[0] != pruned.snapshot_hash  # it ran, and differs
        assert verifier.verify() == length + 1
