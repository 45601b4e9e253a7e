"""Taking a snapshot: states encoded, stored and announced in one write transaction.

The snapshot row and its ``snapshot-created`` event commit together (where the backend's
transaction :class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`), and an
automatic snapshot asks the policy again once the transaction holds the writer lock and the
store has folded what other processes committed: with several writers on one log, the
policy counts from the latest snapshot any of them took.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from chanlog.appending import AppendPipeline, CommitResult
from chanlog.backends.base import Backend, WriteTransaction
from chanlog.backends.capabilities import saves_snapshots_in_transaction
from chanlog.errors import InvalidArgument
from chanlog.events.system import SnapshotCreated
from chanlog.folding import InlineProjections
from chanlog.projections.base import Projection
from chanlog.records import RecordedEvent, StoredSnapshot
from chanlog.snapshots.codec import encode_snapshot
from chanlog.snapshots.manager import SnapshotManager
from chanlog.snapshots.policies import SnapshotPolicy

__all__ = ["SnapshotTaker"]

Work = Callable[[WriteTransaction], CommitResult | None]


class SnapshotTaker:
    """Builds the write-transaction work that takes one snapshot of a store."""

    def __init__(
        self,
        backend: Backend,
        inline: InlineProjections,
        pipeline: AppendPipeline,
        snapshots: SnapshotManager,
        read_range: Callable[[int, int], Iterator[RecordedEvent]],
    ) -> None:
        self._backend = backend
        self._inline = inline
        self._pipeline = pipeline
        self._snapshots = snapshots
        self._read_range = read_range

    def due(self, policy: SnapshotPolicy) -> bool:
        """Whether ``policy`` wants a snapshot of what the store has folded."""
        inline = self._inline
        return bool(inline.by_name) and policy.should_snapshot(
            length=inline.folded, last_snapshot_offset=inline.last_snapshot_offset
        )

    def work(
        self, offset: int | None, policy: SnapshotPolicy | None, taken: list[StoredSnapshot]
    ) -> Work:
        """The work of one snapshot as of ``offset`` (``None``: the end of the log); with
        ``policy``, only if it still wants one. The snapshot goes into ``taken``."""

        def take(transaction: WriteTransaction) -> CommitResult | None:
            length = self._inline.folded  # the store caught up with the transaction's head
            if policy is not None and not self.due(policy):
                return None  # another process took it meanwhile
            at = length if offset is None else offset
            if at > length:
                raise InvalidArgument(f"offset {at} is beyond the end of the log ({length})")
            states = self._inline.by_name if at == length else self._snapshots.projections_at(at)
            snapshot = encode_snapshot(at, states)
            if saves_snapshots_in_transaction(transaction):
                transaction.save_snapshot(snapshot)
            else:
                self._backend.save_snapshot(snapshot)
            taken.append(snapshot)
            pipeline = self._pipeline
            encoded = pipeline.encode([self._announcement(snapshot, states)], batch=False)
            return pipeline.write(transaction, encoded, None, False)

        return take

    def _announcement(
        self, snapshot: StoredSnapshot, states: Mapping[str, Projection]
    ) -> SnapshotCreated:
        at = snapshot.offset
        timestamp = next(self._read_range(at - 1, at)).event.timestamp_ms if at else 0
        objective = states.get("objective")
        channel = states.get("channel")
        return SnapshotCreated(
            snapshot_offset=at,
            snapshot_hash="0x" + snapshot.snapshot_hash.hex(),
            objective_count=0 if objective is None else len(objective),
            channel_count=0 if channel is None else len(channel),
            timestamp_ms=timestamp,
        )
