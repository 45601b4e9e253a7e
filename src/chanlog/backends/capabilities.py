"""Optional backend capabilities: small protocols a backend (or its write transaction) may
implement on top of :class:`~chanlog.backends.base.Backend` and
:class:`~chanlog.backends.base.WriteTransaction`.

Every protocol here is ``@runtime_checkable``, so the store learns what a backend can do with
``isinstance`` and mypy checks a plugin author's signatures against it. Each one says who uses
it and what happens when a backend lacks it; a backend that implements none of them is still
a complete backend. The conformance suite (:mod:`chanlog.testing`) tests each capability a
backend has and skips those it lacks.

Resolve them once, not per call: ``isinstance`` against a runtime-checkable protocol costs
several microseconds (it inspects every member), which is more than an in-memory append. For
backend capabilities the store checks once when it opens. Transactions are new objects at
every write, so :func:`transaction_capabilities` (and the ``TypeGuard`` helpers built on it)
answer from a cache keyed by the transaction's class: capabilities are methods of the class,
never attributes of one instance.

Which built-in backend has what:

| capability | memory | sqlite | postgres |
|---|---|---|---|
| `FindsMany` | no | yes | yes |
| `AppendsUnlessKnown` | yes | yes | no |
| `SavesSnapshotsInTransaction` | yes | yes | yes |
| `DeletesSnapshotsInTransaction` | yes | yes | yes |
| `ReadsStreamPayloads` | yes | yes | yes |
| `ExposesStreamIndex` | yes | yes | yes |
| `CountsStreams` | no | no | yes |
| `RemembersHead` | no | yes | no |
| `FileBacked` | no | yes | no |
| `MayBeReadOnly` | yes | yes | yes |
| `GroupsCommits` | no | yes | yes |
| `ManagesSnapshots` | yes | yes | yes |
| `RecordsSerializer` | yes | yes | yes |
| `KeepsConsumers` | yes | yes | yes |
| `MovesConsumersInTransaction` | yes | yes | yes |
| `ReadsConsumerClock` | yes | yes | yes |

The last three, durable consumers' positions, leases and parked records kept next to the
log and the clock their leases run by, are in :mod:`chanlog.backends.consumer_store`, which
says what a store does without them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, TypeGuard, runtime_checkable

from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = [
    "AppendsUnlessKnown",
    "CountsStreams",
    "DeletesSnapshotsInTransaction",
    "ExposesStreamIndex",
    "FileBacked",
    "FindsMany",
    "GroupsCommits",
    "MayBeReadOnly",
    "ReadsStreamPayloads",
    "RecordsSerializer",
    "RemembersHead",
    "SavesSnapshotsInTransaction",
    "TransactionCapabilities",
    "appends_unless_known",
    "deletes_snapshots_in_transaction",
    "finds_many",
    "save_snapshot_with",
    "saves_snapshots_in_transaction",
    "transaction_capabilities",
]


# -- write-transaction capabilities ---------------------------------------------------------


@runtime_checkable
class FindsMany(Protocol):
    """A write transaction that looks many event ids up in one round trip.

    Used by the store to learn which events of a batch are already in the log (idempotent
    appends). Fallback: one :meth:`~chanlog.backends.base.WriteTransaction.find` per id.
    The SQLite and PostgreSQL transactions have it.
    """

    def find_many(self, event_ids: Sequence[bytes]) -> list[int | None]:
        """The offset of each id (``None`` where absent), in the order given, repeats and
        records appended earlier in this transaction included."""
        ...


@runtime_checkable
class AppendsUnlessKnown(Protocol):
    """A write transaction that lets its unique index on event ids judge an append
    (ADR 0022).

    Used by the store to write optimistically: it stages a batch as if none of it were in
    the log and looks ids up only when this returns False. Fallback: look every id up first
    (:class:`FindsMany` or ``find``), then ``append``. The SQLite and memory transactions
    have it.
    """

    def append_unless_known(self, records: Sequence[StoredRecord]) -> bool:
        """Append like ``append`` and return True; or, when an event id among ``records``
        is already in the log, append none of them and return False, leaving the
        transaction usable (the same offsets are still free)."""
        ...


@runtime_checkable
class SavesSnapshotsInTransaction(Protocol):
    """A write transaction that writes a snapshot row in the same transaction as its
    records, so a snapshot and its ``snapshot-created`` event commit together, or neither
    does.

    Used by the store when it takes a snapshot: inside one ``backend.write()`` it appends
    the ``snapshot-created`` record and calls ``transaction.save_snapshot(snapshot)``.
    Fallback: :meth:`~chanlog.backends.base.Backend.save_snapshot` first, then the event
    in a transaction of its own (a crash in between leaves a snapshot no event announces,
    which readers must then ignore). Check it on the *transaction*: every backend has a
    ``save_snapshot`` of its own, so ``isinstance(backend, ...)`` would always say yes.
    The memory, SQLite and PostgreSQL transactions have it.
    """

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store ``snapshot`` (replacing one at the same offset) when the transaction
        commits; nothing of it when the transaction rolls back."""
        ...


@runtime_checkable
class DeletesSnapshotsInTransaction(Protocol):
    """A write transaction that deletes snapshot rows, so that which snapshots to delete is
    decided under the writer lock, where no other writer can take a snapshot meanwhile.

    Used by snapshot retention (``prune``, ADR 0038): it lists the stored snapshots and the
    bases the kept incremental ones are read through inside one ``backend.write()``, and
    deletes the others there. Fallback: the list is taken outside any lock and
    :meth:`~chanlog.backends.capabilities.ManagesSnapshots.delete_snapshots` deletes in a
    transaction of its own, so a snapshot another process takes in between on a base that
    is deleted is left unreadable (reads skip it and start further back). Check it on the
    *transaction*. The memory, SQLite and PostgreSQL transactions have it.
    """

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` (others are ignored) when the transaction
        commits, none of them when it rolls back; return how many of them there were."""
        ...


# -- backend capabilities -------------------------------------------------------------------


@runtime_checkable
class ReadsStreamPayloads(Protocol):
    """A backend that reads a stream as bare ``(offset, event_type, payload)`` tuples.

    Used by reconstruction, which folds over events and needs neither a
    :class:`~chanlog.records.StoredRecord` nor a chain-hash copy per event. Fallback:
    :meth:`~chanlog.backends.base.Backend.read_stream`. All built-in backends have it.
    """

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """The records :meth:`~chanlog.backends.base.Backend.read_stream` yields for the
        same arguments, as ``(offset, event_type, payload)``, in order, streamed."""
        ...


@runtime_checkable
class ExposesStreamIndex(Protocol):
    """A backend that can list the derived per-stream index its stream reads rely on.

    Used by ``verify()`` to prove the index agrees with the streams each stored payload
    declares: a deleted or added index row silently changes what ``read_stream`` and
    reconstruction return, and nothing else would notice. Fallback: the index is outside
    verification (``verify`` should say so). All built-in backends have it: SQLite's
    ``streams`` table plus the streams of the unindexed tail rows its reads look through,
    PostgreSQL's ``streams`` table, the memory backend's offsets per stream.
    """

    def stream_index(self) -> Iterator[tuple[str, int]]:
        """Every ``(stream, offset)`` pair of the index, for the records committed when
        the iteration starts, ordered by offset and then by stream (code point order),
        streamed. A pair appears as often as the index holds it (the SQL backends hold
        each pair once, even for a record that names a stream twice)."""
        ...


@runtime_checkable
class CountsStreams(Protocol):
    """A backend that stores the number of records per stream apart from the records.

    Used by ``verify()`` to check those counts against the payloads (they answer
    ``stream_version`` and so ``expected_version``). Fallback: nothing to check, the
    backend counts from its index, which :class:`ExposesStreamIndex` covers. The
    PostgreSQL backend has it (its ``stream_versions`` table).
    """

    def stored_stream_versions(self) -> Mapping[str, int]:
        """``{stream: stored count}`` for every stream with a stored count."""
        ...


@runtime_checkable
class RemembersHead(Protocol):
    """A backend that keeps a witness of the head outside the log's own rows, so cutting
    records off the end of the log is detected (issue 13, defect 2).

    Used by the store: at open and in ``verify()``, a log shorter than its remembered head,
    or whose record at ``length - 1`` does not carry the remembered chain hash, has lost
    records (an :class:`~chanlog.errors.IntegrityError`). The store calls
    :meth:`remember_head` when it knows a head is good (after ``verify()``, after a
    snapshot); the backend may also remember on its own (SQLite does at ``close()``, but
    never a head that does not extend the one remembered). Fallback: a cut tail is
    detected only through other witnesses (``snapshot-created`` events, a head the
    operator recorded). The SQLite backend has it (the ``<database>-head`` file).
    """

    def remembered_head(self) -> Head | None:
        """The remembered head, or ``None`` when none was remembered.

        Raises:
            IntegrityError: the witness exists but is damaged (names where it is kept).
        """
        ...

    def remember_head(self, head: Head) -> None:
        """Remember ``head`` durably, replacing the witness (even with a shorter head: an
        explicit call is the operator's decision, e.g. after recovering from a backup).

        Raises:
            StorageError: the witness cannot be written (or the backend is read-only).
        """
        ...


@runtime_checkable
class FileBacked(Protocol):
    """A backend whose log lives in one file.

    Used by configuration and the CLI (resolve relative paths, report file sizes, name the
    file in messages) without knowing the backend's name. Fallback: the backend is not a
    file; say nothing about files.
    """

    @property
    def path(self) -> Path:
        """The database file."""
        ...


@runtime_checkable
class ManagesSnapshots(Protocol):
    """A backend that lists its stored snapshots with their sizes and deletes some.

    Used by snapshot retention (a policy that
    :class:`~chanlog.snapshots.policies.RetainsSnapshots`; ADR 0030) and by
    ``chanlog snapshots``. Fallback: snapshots are never deleted. Deleting one changes
    nothing a reader relies on (a ``snapshot-created`` event whose snapshot is gone only
    means reconstruction starts further back). The memory, SQLite and PostgreSQL backends
    have it.
    """

    def snapshot_sizes(self) -> list[tuple[int, int]]:
        """``(offset, bytes)`` of every stored snapshot, by offset."""
        ...

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` (others are ignored); return how many were
        deleted. Refused with :class:`~chanlog.errors.StorageError` when read-only."""
        ...


@runtime_checkable
class GroupsCommits(Protocol):
    """A backend whose commit costs much more than staging an event (an fsync, a network
    round trip), so concurrent appends should share one transaction and one commit.

    Used by the store for group commit (ADR 0029): when ``groups_commits`` is true, threads
    appending at once are written in one write transaction, each refusal failing only its
    own append. Fallback: one transaction per append. The SQLite and PostgreSQL backends
    have it.
    """

    groups_commits: bool
    """True when concurrent appends should be grouped into one commit."""


@runtime_checkable
class MayBeReadOnly(Protocol):
    """A backend that can be opened read-only (its factory's ``read_only=True``) and says
    whether it was.

    Used by the store to leave out what writes (snapshots, remembering the head) when it
    sits on a read-only handle, e.g. to inspect a damaged log without folding it.
    Fallback: the backend is taken as writable, and a write it refuses fails with its
    :class:`~chanlog.errors.StorageError`. All built-in backends have it.
    """

    @property
    def read_only(self) -> bool:
        """True when this handle refuses every write."""
        ...


@runtime_checkable
class RecordsSerializer(Protocol):
    """A backend that keeps, next to the log, the name of the serializer its payloads are
    written with (ADR 0031).

    Used by the store when it opens: a store configured with another serializer is refused
    with a :class:`~chanlog.errors.ConfigError` naming both, instead of reading every payload
    as damage; a writable store records its own when none is recorded (a new log, or one
    written before chanlog recorded it). Fallback: nothing is checked, and a wrong serializer
    shows as payloads that do not decode. The memory, SQLite (the ``serializer`` row of
    ``chanlog_meta``) and PostgreSQL (its ``meta`` table) backends have it.
    """

    def recorded_serializer(self) -> str | None:
        """The serializer name recorded for this log, or ``None`` when none is."""
        ...

    def record_serializer(self, name: str) -> str:
        """Record ``name`` unless a serializer is recorded already, and return the one
        recorded now: of several processes recording at once, the first one wins, and the
        others get its name back.

        Raises:
            StorageError: the backend is read-only, or could not write.
        """
        ...


# -- resolving transaction capabilities once per class ---------------------------------------


class TransactionCapabilities(NamedTuple):
    """What a write transaction's class can do beyond
    :class:`~chanlog.backends.base.WriteTransaction`."""

    finds_many: bool
    """It implements :class:`FindsMany`."""
    appends_unless_known: bool
    """It implements :class:`AppendsUnlessKnown`."""
    saves_snapshots: bool
    """It implements :class:`SavesSnapshotsInTransaction`."""
    deletes_snapshots: bool
    """It implements :class:`DeletesSnapshotsInTransaction`."""


_BY_CLASS: dict[type, TransactionCapabilities] = {}


def transaction_capabilities(transaction: object) -> TransactionCapabilities:
    """The capabilities of ``transaction``'s class, checked with ``isinstance`` the first
    time a class is seen and then answered from a cache (a dictionary lookup, where each
    ``isinstance`` against a protocol costs microseconds)."""
    kind = type(transaction)
    found = _BY_CLASS.get(kind)
    if found is None:
        found = TransactionCapabilities(
            finds_many=isinstance(transaction, FindsMany),
            appends_unless_known=isinstance(transaction, AppendsUnlessKnown),
            saves_snapshots=isinstance(transaction, SavesSnapshotsInTransaction),
            deletes_snapshots=isinstance(transaction, DeletesSnapshotsInTransaction),
        )
        _BY_CLASS[kind] = found  # a racing thread computes the same value
    return found


def finds_many(transaction: object) -> TypeGuard[FindsMany]:
    """Whether ``transaction`` implements :class:`FindsMany` (cached per class; narrows the
    type for mypy)."""
    return transaction_capabilities(transaction).finds_many


def appends_unless_known(transaction: object) -> TypeGuard[AppendsUnlessKnown]:
    """Whether ``transaction`` implements :class:`AppendsUnlessKnown` (cached per class;
    narrows the type for mypy)."""
    return transaction_capabilities(transaction).appends_unless_known


def saves_snapshots_in_transaction(
    transaction: object,
) -> TypeGuard[SavesSnapshotsInTransaction]:
    """Whether ``transaction`` implements :class:`SavesSnapshotsInTransaction` (cached per
    class; narrows the type for mypy)."""
    return transaction_capabilities(transaction).saves_snapshots


def save_snapshot_with(
    transaction: object, backend: _SavesSnapshots | None, snapshot: StoredSnapshot
) -> None:
    """Store ``snapshot`` in ``transaction`` where it can hold it (committed with what the
    transaction writes), else through ``backend`` right away (when one is given)."""
    if saves_snapshots_in_transaction(transaction):
        transaction.save_snapshot(snapshot)
    elif backend is not None:
        backend.save_snapshot(snapshot)


class _SavesSnapshots(Protocol):
    def save_snapshot(self, snapshot: StoredSnapshot) -> None: ...


def deletes_snapshots_in_transaction(
    transaction: object,
) -> TypeGuard[DeletesSnapshotsInTransaction]:
    """Whether ``transaction`` implements :class:`DeletesSnapshotsInTransaction` (cached per
    class; narrows the type for mypy)."""
    return transaction_capabilities(transaction).deletes_snapshots
