"""Taking a snapshot: states encoded, stored and announced in one write transaction.

The snapshot row and its ``snapshot-created`` event commit together (where the backend's
transaction :class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`), and an
automatic snapshot asks the policy again once the transaction holds the writer lock and the
store has folded what other processes committed: with several writers on one log, the
policy counts from the latest snapshot any of them took.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping

from chanlog.appending import AppendPipeline, CommitResult, Encoded, Work
from chanlog.backends.base import Backend, WriteTransaction
from chanlog.backends.capabilities import (
    ManagesSnapshots,
    RemembersHead,
    deletes_snapshots_in_transaction,
    save_snapshot_with,
)
from chanlog.errors import ChanlogError, DecodeError, InvalidArgument, StorageError
from chanlog.events.system import SnapshotCreated
from chanlog.folding import InlineProjections
from chanlog.projections.base import Projection
from chanlog.records import RecordedEvent, StoredSnapshot
from chanlog.snapshots.codec import base_reference, encode_snapshot
from chanlog.snapshots.incremental import SnapshotChain, chain_of, encode_incremental
from chanlog.snapshots.manager import SnapshotManager, stored_snapshot
from chanlog.snapshots.policies import (
    EveryNEvents,
    IncrementalSnapshots,
    PlansSnapshots,
    RetainsSnapshots,
    SnapshotPolicy,
    retained,
)

__all__ = ["NEVER", "SnapshotTaker"]

logger = logging.getLogger("chanlog.snapshots")

NEVER = sys.maxsize
"""A :attr:`SnapshotTaker.ask_from` no log length reaches."""


class SnapshotTaker:
    """Builds the write-transaction work that takes one snapshot of a store, and decides
    with the store's ``policy`` when an automatic one is due."""

    def __init__(
        self,
        backend: Backend,
        inline: InlineProjections,
        pipeline: AppendPipeline,
        snapshots: SnapshotManager,
        read_range: Callable[[int, int], Iterator[RecordedEvent]],
        policy: SnapshotPolicy,
        transact: Callable[[Work, list[Encoded], dict[str, int] | None, bool], CommitResult],
    ) -> None:
        self._backend = backend
        self._transact = transact
        self._remembers = backend if isinstance(backend, RemembersHead) else None
        self._inline = inline
        self._pipeline = pipeline
        self._snapshots = snapshots
        self._read_range = read_range
        self.policy = policy
        self._plan = policy.next_snapshot_at if isinstance(policy, PlansSnapshots) else None
        self._chain: SnapshotChain | None = None  # the last snapshot this store took
        self._bases: dict[tuple[int, int], int | None] = {}  # (offset, size) → base offset
        self.ask_from = 0
        """The folded length from which :meth:`due` may be true: the store asks only then
        (an attribute read per commit instead of a call). 0 for a policy that does not
        :class:`~chanlog.snapshots.policies.PlansSnapshots`: it is asked after every commit."""

    def rewound(self) -> None:
        """The log lost records this store folded (ADR 0043): the last snapshot it took may
        be gone, or another may come to stand at its offset, so the next snapshot is based
        on what is stored then, and the policy is asked again; the snapshots it read are
        checked against the log again."""
        self._snapshots.rewound()
        self._chain = None
        self._bases.clear()
        self.ask_from = 0

    def due(self) -> bool:
        """Whether the policy wants a snapshot of what the store has folded."""
        inline = self._inline
        if not inline.by_name:
            self.ask_from = NEVER  # nothing to snapshot, ever
            return False
        last = inline.last_snapshot_offset
        if self._plan is not None:
            # Moves forward only: a new snapshot in the log, here or elsewhere, is noticed
            # the next time the old point is reached.
            planned = self._plan(last_snapshot_offset=last)
            self.ask_from = NEVER if planned is None else planned
        return self.policy.should_snapshot(length=inline.folded, last_snapshot_offset=last)

    def take(self, offset: int | None, *, automatic: bool) -> StoredSnapshot | None:
        """Take a snapshot as of ``offset`` (``None``: the end of the log) in one write
        transaction of the store's; when ``automatic``, only if the policy still wants one
        then (``None`` when it does not)."""
        taken: list[tuple[StoredSnapshot, SnapshotChain | None]] = []
        self._transact(self._work(offset, automatic, taken), [], None, False)
        if taken and taken[0][1] is not None:
            self._chain = taken[0][1]  # committed: the next snapshot may be taken on it
        if taken:
            self._follow_up()
        return taken[0][0] if taken else None

    def _follow_up(self) -> None:
        """After a snapshot committed: remember the head it ends, then apply the retention.
        A storage failure in either (a disk full: the commit went into the log's reserve,
        a new witness file does not fit) is logged, not raised: the snapshot and its event
        are in the log, so a caller told otherwise would take another. The older witness
        stands meanwhile, and the next snapshot or ``chanlog snapshots prune`` prunes."""
        try:
            if self._remembers is not None:
                self._remembers.remember_head(self._backend.head())
        except StorageError as exc:
            logger.warning("the head after a snapshot was not remembered: %s", exc)
        try:
            self.prune()
        except StorageError as exc:
            logger.warning("snapshots were not pruned after a snapshot: %s", exc)

    def prune(self, keep: int | None = None) -> list[int]:
        """Delete the stored snapshots the policy does not retain (or, with ``keep``, all
        but the latest ``keep`` and thinned older ones); return their offsets. Nothing is
        deleted when the backend cannot or the policy keeps everything.

        Which ones is decided again inside a write transaction of the store's, and they are
        deleted there (where the backend's transaction
        :class:`~chanlog.backends.capabilities.DeletesSnapshotsInTransaction`, ADR 0038):
        no other writer can meanwhile take an incremental snapshot on one of them.

        Raises:
            InvalidArgument: ``keep`` is not an int >= 0.
        """
        if keep is not None and (type(keep) is not int or keep < 0):
            raise InvalidArgument(f"keep must be an int >= 0 (0: keep all), got {keep!r}")
        backend = self._backend
        if not isinstance(backend, ManagesSnapshots):
            return []
        if keep is None and not isinstance(self.policy, RetainsSnapshots):
            return []
        if not self._doomed(backend, keep):
            return []  # a snapshot taken meanwhile only dooms more: the next prune's
        doomed: list[int] = []
        deleted: list[bool] = []

        def delete(
            transaction: WriteTransaction,
            _encoded: list[Encoded],
            _expected: dict[str, int] | None,
            _batch: bool,
        ) -> CommitResult:
            doomed.extend(self._doomed(backend, keep))
            if doomed and deletes_snapshots_in_transaction(transaction):
                transaction.delete_snapshots(doomed)
                deleted.append(True)
            return CommitResult([], [], [], None)

        self._transact(delete, [], None, False)
        if doomed and not deleted:
            backend.delete_snapshots(doomed)
        return doomed

    def _doomed(self, backend: ManagesSnapshots, keep: int | None) -> list[int]:
        """The offsets of the stored snapshots :meth:`prune` deletes now."""
        policy = self.policy
        sizes = dict(backend.snapshot_sizes())
        offsets = list(sizes)
        if keep is not None:
            spacing = policy.n if isinstance(policy, EveryNEvents) else 1
            kept = retained(offsets, keep, spacing)
        else:
            assert isinstance(policy, RetainsSnapshots)
            kept = policy.retain(offsets)
        kept = self._with_bases(kept, sizes)
        return [offset for offset in offsets if offset not in kept]

    def _with_bases(self, kept: set[int], sizes: dict[int, int]) -> set[int]:
        """``kept`` and every snapshot a kept incremental one is taken on, through its
        chain: deleting a base would leave the snapshots on it unreadable. The base of each
        stored snapshot is read once (from its first line) and remembered by offset and
        size."""
        closed = set(kept)
        pending = list(kept)
        while pending:
            offset = pending.pop()
            key = (offset, sizes.get(offset, -1))
            if key not in self._bases:
                try:
                    snapshot = stored_snapshot(self._backend, offset)
                    reference = None
                    if snapshot is not None and snapshot.offset == offset:
                        reference = base_reference(snapshot)
                except DecodeError:
                    reference = None  # unreadable anyway: it keeps nothing alive
                self._bases[key] = None if reference is None else reference[0]
            base = self._bases[key]
            if base is not None and base in sizes and base not in closed:
                closed.add(base)
                pending.append(base)
        return closed

    def maybe_take(self) -> None:
        """After a commit: take a snapshot if the policy wants one. A failure is logged,
        never raised: the append it follows has succeeded, and a snapshot is only an
        optimisation."""
        if self.due():
            try:
                self.take(None, automatic=True)
            except ChanlogError:
                logger.exception("automatic snapshot at offset %d failed", self._inline.folded)

    def _work(
        self,
        offset: int | None,
        automatic: bool,
        taken: list[tuple[StoredSnapshot, SnapshotChain | None]],
    ) -> Work:
        """The work of one snapshot as of ``offset`` (``None``: the end of the log); when
        ``automatic``, only if the policy still wants one. The snapshot, and what a next
        incremental one may be taken on, go into ``taken``."""

        def take(
            transaction: WriteTransaction,
            _encoded: list[Encoded],
            _expected: dict[str, int] | None,
            _batch: bool,
        ) -> CommitResult:
            length = self._inline.folded  # the store caught up with the transaction's head
            if automatic and not self.due():
                return CommitResult([], [], [], None)  # another process took it meanwhile
            at = length if offset is None else offset
            if at > length:
                raise InvalidArgument(f"offset {at} is beyond the end of the log ({length})")
            backend = self._backend
            stored = dict(backend.snapshot_sizes()) if isinstance(backend, ManagesSnapshots) else {}
            states: Mapping[str, Projection] = (
                self._inline.by_name if at == length else self._snapshots.projections_at(at)
            )
            snapshot, chain = self._encode(at, states, stored, at == length)
            save_snapshot_with(transaction, self._backend, snapshot)
            taken.append((snapshot, chain))
            pipeline = self._pipeline
            encoded = pipeline.encode([self._announcement(snapshot, states)], batch=False)
            return pipeline.write(transaction, encoded, None, False)

        return take

    def _encode(
        self, at: int, states: Mapping[str, Projection], stored: dict[int, int], current: bool
    ) -> tuple[StoredSnapshot, SnapshotChain | None]:
        """The snapshot of ``states`` (the ``current`` ones, or as of an earlier ``at``),
        given the offsets of the ``stored`` snapshots (empty when the backend cannot list
        them).

        A readable snapshot already stored at ``at`` with the same schema versions is taken
        again as it is: the same states, the same bytes, and a snapshot taken on it stays
        readable. Otherwise, when the policy asks for incremental snapshots and the backend
        manages its snapshots, one of the current states is taken on the last snapshot this
        store took, if its chain is still stored as it was, else on the newest readable
        stored one (ADR 0036, ADR 0057); else it is whole."""
        chain = self._chain if self._chain is not None and self._chain.offset == at else None
        existing = self._readable_at(at, states) if at in stored else None
        if existing is not None:
            return existing, chain
        policy = self.policy
        if (
            not current
            or not isinstance(self._backend, ManagesSnapshots)  # prune must see the bases
            or not (isinstance(policy, IncrementalSnapshots) and policy.incremental is True)
        ):
            return encode_snapshot(at, states), None
        previous = self._chain
        if previous is None or not previous.stored_in(stored):
            # The first snapshot of this store, or its chain was pruned or replaced by another
            # writer (a snapshot on it could not be read): go on from what is stored now.
            previous = self._resumed()
        return encode_incremental(at, states, previous)

    def _readable_at(self, at: int, states: Mapping[str, Projection]) -> StoredSnapshot | None:
        """The snapshot stored at ``at``, when it is readable and holds the versions of
        ``states``; ``None`` when a snapshot taken there must replace it."""
        try:
            existing = stored_snapshot(self._backend, at)
        except DecodeError:
            return None  # a row the backend cannot read
        if (
            existing is None
            or existing.offset != at
            or existing.versions != {n: p.schema_version for n, p in states.items()}
        ):
            return None
        try:
            self._snapshots.open(existing)
        except ChanlogError:
            return None  # damaged or its base is gone
        return existing

    def _resumed(self) -> SnapshotChain | None:
        """The chain of the newest readable stored snapshot, for the first snapshot this
        store takes (a restarted node goes on with its chain) or one whose chain another
        writer pruned or replaced; ``None`` without one."""
        latest = self._snapshots.latest_snapshot()
        return None if latest is None else chain_of(self._snapshots.open(latest))

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
