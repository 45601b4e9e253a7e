"""A memory backend that fails on demand, as a database restarting would.

Consumers, handlers, ingest sources and plugins are meant to outlast a storage failure: the
runner retries from its committed position, a failed commit of a handler's appends is not
the handler's failure, an ingest retries the batch. :class:`FlakyBackend` lets a test prove
it: arm it, and its next reads or write transactions raise
:class:`~chanlog.errors.StorageError`, then it works again::

    import chanlog
    from chanlog.testing import FlakyBackend, sample_events

    backend = FlakyBackend()
    store = chanlog.EventStore(backend, projections=[])
    backend.fail_writes(2)  # the next two write transactions fail
    for _ in range(3):  # the retry loop under test
        try:
            store.append(sample_events(1)[0])
            break
        except chanlog.StorageError:
            pass
    assert backend.failed_writes == 2 and backend.writes_to_fail == 0
    assert len(store) == 1
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any, Literal

from chanlog.backends.memory import MemoryBackend, MemoryTransaction
from chanlog.errors import InvalidArgument, StorageError
from chanlog.records import StoredRecord

__all__ = [
    "CONSUMER_WRITES",
    "RESTARTING",
    "ConsumerWrite",
    "ConsumerWriteFaults",
    "FlakyBackend",
    "WriteStage",
]

RESTARTING = "the database is restarting (a failure simulated by FlakyBackend)"
"""The default message of the :class:`~chanlog.errors.StorageError` a
:class:`FlakyBackend` raises."""

WriteStage = Literal["begin", "commit", "acknowledgement"]
"""Where an armed write transaction fails: ``"begin"`` (``write()`` raises, nothing runs),
``"commit"`` (the transaction runs, then its commit is refused and rolled back) or
``"acknowledgement"`` (the transaction commits, then the caller is told it failed)."""

_STAGES = ("begin", "commit", "acknowledgement")

ConsumerWrite = Literal["ensure", "acquire", "release", "move", "reset", "replay", "drop", "delete"]
"""A write to a backend's durable consumers outside a write transaction, named by what it
does: ``"ensure"`` (:meth:`~chanlog.backends.consumer_store.KeepsConsumers.ensure_consumer`),
``"acquire"`` (``acquire_lease``: a lease taken or renewed by the heartbeat), ``"release"``
(``release_lease``), ``"move"`` (``move_consumer``: a plain position commit, a park, a
replay settled, a last error written by the heartbeat), ``"reset"`` (``reset_consumer``),
``"replay"`` (``request_replay``), ``"drop"`` (``drop_parked``), ``"delete"``
(``delete_consumer``)."""

CONSUMER_WRITES: dict[str, str] = {
    "ensure": "ensure_consumer",
    "acquire": "acquire_lease",
    "release": "release_lease",
    "move": "move_consumer",
    "reset": "reset_consumer",
    "replay": "request_replay",
    "drop": "drop_parked",
    "delete": "delete_consumer",
}
"""Each :data:`ConsumerWrite` and the backend method that makes it."""


def _checked_count(count: object, method: str) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise InvalidArgument(f"FlakyBackend.{method}: count must be an int >= 0, got {count!r}")
    return count


class ConsumerWriteFaults:
    """Failures armed at the writes a backend makes to its durable consumers outside a
    write transaction (:data:`ConsumerWrite`): leases taken, renewed and given up, plain
    position moves (commits, parks, replays settled, last errors), resets, replays marked,
    records dropped. Works on any backend that keeps consumers (memory, ``sqlite``, a
    plugin's): it wraps those methods on the instance, not on its class.

    Nothing fails until armed with :meth:`fail`. A write that fails at ``"begin"`` or
    ``"commit"`` keeps nothing (for one statement the two are alike: it is refused); at
    ``"acknowledgement"`` it is made, then the caller is told it failed (a connection
    lost as the database committed). A write the backend refuses for a reason of its own
    (:class:`~chanlog.errors.LeaseHeld`, ...) raises that, and does not use up a failure
    armed at ``"acknowledgement"``. Safe to arm from another thread than the one failing
    (a runner's, or its lease's heartbeat)::

        faults = ConsumerWriteFaults(backend)
        faults.fail(1, writes=["move"], at="acknowledgement")  # the next position commit

    Args:
        backend: a backend that keeps consumers
            (:class:`~chanlog.backends.consumer_store.KeepsConsumers`).
        message: the text of every :class:`~chanlog.errors.StorageError` raised.
    """

    def __init__(self, backend: object, *, message: str = RESTARTING) -> None:
        self.backend = backend
        self.message = message
        self._lock = threading.Lock()
        self._count = 0
        self._stage: WriteStage = "begin"
        self._writes: frozenset[str] = frozenset(CONSUMER_WRITES)
        self._matching: Callable[..., bool] | None = None
        self.failed: list[str] = []
        """The writes that failed so far, in order (each a :data:`ConsumerWrite`)."""
        for write, method in CONSUMER_WRITES.items():
            setattr(backend, method, self._failing(write, getattr(backend, method)))

    def fail(
        self,
        count: int,
        *,
        at: WriteStage = "begin",
        writes: Collection[ConsumerWrite] | None = None,
        matching: Callable[..., bool] | None = None,
    ) -> None:
        """Make the next ``count`` consumer writes among ``writes`` (``None``: every kind)
        for which ``matching(*arguments)`` is true (``None``: all of them) raise
        :class:`~chanlog.errors.StorageError` at stage ``at``, replacing what was armed
        (``0`` disarms).

        Raises:
            InvalidArgument: ``count`` is not an int >= 0, ``at`` is not a stage, or
                ``writes`` names an unknown write.
        """
        count = _checked_count(count, "fail")
        chosen = frozenset(CONSUMER_WRITES if writes is None else writes)
        if at not in _STAGES or not chosen <= CONSUMER_WRITES.keys():
            raise InvalidArgument(
                f"ConsumerWriteFaults.fail: at must be one of {_STAGES} and writes among "
                f"{sorted(CONSUMER_WRITES)}, got at={at!r}, writes={sorted(chosen)}"
            )
        with self._lock:
            self._count, self._stage, self._writes, self._matching = count, at, chosen, matching

    @property
    def to_fail(self) -> int:
        """How many armed failures are left."""
        return self._count

    def _take(self, write: str, args: tuple[Any, ...]) -> WriteStage | None:
        with self._lock:
            if not self._count or write not in self._writes:
                return None
            if self._matching is not None and not self._matching(*args):
                return None
            self._count -= 1
            self.failed.append(write)
            return self._stage

    def _give_back(self) -> None:
        with self._lock:
            self._count += 1
            self.failed.pop()

    def _failing(self, write: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def failing(*args: Any) -> Any:
            stage = self._take(write, args)
            if stage is None:
                return method(*args)
            if stage != "acknowledgement":
                raise StorageError(self.message)
            try:
                method(*args)
            except BaseException:
                self._give_back()
                raise
            raise StorageError(self.message)  # made all the same

        return failing


class _FlakyTransaction(MemoryTransaction):
    """A memory transaction whose commit the backend may refuse."""

    __slots__ = ("_flaky",)

    def __init__(self, backend: FlakyBackend) -> None:
        super().__init__(backend)
        self._flaky = backend

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None and self._flaky._take("commit"):
            error = StorageError(self._flaky.message)
            super().__exit__(StorageError, error, None)  # rolls back, releases the lock
            raise error
        super().__exit__(exc_type, exc, traceback)
        if exc_type is None and self._flaky._take("acknowledgement"):
            raise StorageError(self._flaky.message)  # committed all the same


class FlakyBackend(MemoryBackend):
    """A :class:`~chanlog.backends.memory.MemoryBackend` whose next reads or write
    transactions fail with :class:`~chanlog.errors.StorageError`, as they would while the
    database restarts; once the armed failures are used up it works as before.

    Nothing fails until armed: :meth:`fail_reads` and :meth:`fail_writes` set how many of
    the next calls fail (each replaces what it armed before; ``0`` disarms). Arm it after
    the store is built, right before the code under test runs. The counters are safe to
    read and arm from another thread than the one failing (a consumer's runner).

    A *read* is a call of :meth:`read`, :meth:`read_stream` or :meth:`read_stream_payloads`
    (it raises when called, before yielding anything); a *write* is a transaction opened by
    :meth:`write`. The consumers' own writes made outside a transaction (leases, plain
    position commits, parks, last errors) fail when armed with
    :meth:`fail_consumer_writes`. The head, the lookups and the consumers' reads keep
    working.

    Args:
        message: the text of every :class:`~chanlog.errors.StorageError` raised
            (:data:`RESTARTING` by default); it is also :attr:`message`.
        read_only: as for :class:`~chanlog.backends.memory.MemoryBackend`.

    Raises:
        InvalidArgument: ``message`` is not a non-empty string.
    """

    def __init__(self, *, message: str = RESTARTING, read_only: bool = False) -> None:
        super().__init__(read_only=read_only)
        if not isinstance(message, str) or not message:
            raise InvalidArgument(f"FlakyBackend: message must be a non-empty str, got {message!r}")
        self.message = message
        """The text of every :class:`~chanlog.errors.StorageError` this backend raises."""
        self._arming = threading.Lock()
        self._armed = {"read": 0, "begin": 0, "commit": 0, "acknowledgement": 0}
        self._failed = {"read": 0, "write": 0}
        self.consumer_faults = ConsumerWriteFaults(self, message=message)
        """Failures of the consumer writes made outside a transaction
        (:meth:`fail_consumer_writes`)."""

    # -- arming ------------------------------------------------------------------------

    def fail_reads(self, count: int) -> None:
        """Make the next ``count`` reads raise :class:`~chanlog.errors.StorageError`
        (replacing any read failures still armed; ``0`` disarms).

        Raises:
            InvalidArgument: ``count`` is not an int >= 0.
        """
        count = _checked_count(count, "fail_reads")
        with self._arming:
            self._armed["read"] = count

    def fail_writes(self, count: int, *, at: WriteStage = "begin") -> None:
        """Make the next ``count`` write transactions raise
        :class:`~chanlog.errors.StorageError` at stage ``at`` (replacing the failures still
        armed at that stage; ``0`` disarms it).

        With ``at="begin"`` (the default) :meth:`write` raises: the connection is gone
        before the transaction starts, so nothing of it runs. With ``at="commit"`` the
        transaction runs (the store stages its records, snapshots and consumer moves), then
        leaving it raises instead of committing and nothing staged is kept: the connection
        dropped as it committed. A transaction left with an exception of its own rolls back
        as usual and does not use up an armed commit failure. With ``at="acknowledgement"``
        the transaction commits, then leaving it raises all the same: the connection dropped
        after the commit reached the database, so the caller cannot know it happened (what a
        networked database leaves a client with). Failures armed at several stages are all
        used, earliest stage first: a transaction refused at begin never reaches its commit.

        Raises:
            InvalidArgument: ``count`` is not an int >= 0, or ``at`` is not one of
                ``"begin"``, ``"commit"`` and ``"acknowledgement"``.
        """
        count = _checked_count(count, "fail_writes")
        if at not in _STAGES:
            raise InvalidArgument(
                "FlakyBackend.fail_writes: at must be 'begin', 'commit' or 'acknowledgement', "
                f"got {at!r}"
            )
        with self._arming:
            self._armed[at] = count

    def fail_consumer_writes(
        self,
        count: int,
        *,
        at: WriteStage = "begin",
        writes: Collection[ConsumerWrite] | None = None,
        matching: Callable[..., bool] | None = None,
    ) -> None:
        """Make the next ``count`` writes to the durable consumers made outside a write
        transaction (a lease taken or renewed, a plain position commit, a park, a last
        error the heartbeat writes ...: :data:`ConsumerWrite`) raise
        :class:`~chanlog.errors.StorageError`; see :meth:`ConsumerWriteFaults.fail`. A
        consumer's move made with a handler's appends is a write transaction
        (:meth:`fail_writes`).

        Raises:
            InvalidArgument: as :meth:`ConsumerWriteFaults.fail`.
        """
        self.consumer_faults.fail(count, at=at, writes=writes, matching=matching)

    # -- counters ----------------------------------------------------------------------

    @property
    def reads_to_fail(self) -> int:
        """How many of the next reads will still fail."""
        return self._armed["read"]

    @property
    def writes_to_fail(self) -> int:
        """How many of the next write transactions will still fail (at any stage)."""
        return self._armed["begin"] + self._armed["commit"] + self._armed["acknowledgement"]

    @property
    def failed_reads(self) -> int:
        """How many reads have failed so far."""
        return self._failed["read"]

    @property
    def failed_writes(self) -> int:
        """How many write transactions have failed so far (at any stage)."""
        return self._failed["write"]

    def _take(self, armed: str) -> bool:
        """Use up one failure armed as ``armed`` (``"read"`` or a write stage): True when
        there was one, and the call must fail."""
        with self._arming:
            if not self._armed[armed]:
                return False
            self._armed[armed] -= 1
            self._failed["read" if armed == "read" else "write"] += 1
            return True

    def _read_fails(self) -> None:
        if self._take("read"):
            raise StorageError(self.message)

    # -- the failing paths -------------------------------------------------------------

    def write(self) -> MemoryTransaction:
        """A write transaction, unless a failure is armed at ``"begin"`` (see
        :meth:`fail_writes`).

        Raises:
            StorageError: a failure armed at ``"begin"`` is used up.
        """
        if self._take("begin"):
            raise StorageError(self.message)
        return _FlakyTransaction(self)

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        """The records in ``[start, end)``, unless a read failure is armed.

        Raises:
            StorageError: an armed read failure is used up.
        """
        self._read_fails()
        return super().read(start, end)

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        """The records of ``stream`` in ``[start, end)``, unless a read failure is armed.

        Raises:
            StorageError: an armed read failure is used up.
        """
        self._read_fails()
        return super().read_stream(stream, start, end)

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """What :meth:`read_stream` reads, lean, unless a read failure is armed.

        Raises:
            StorageError: an armed read failure is used up.
        """
        self._read_fails()
        return super().read_stream_payloads(stream, start, end)
