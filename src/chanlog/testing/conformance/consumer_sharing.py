"""Conformance cases for durable consumers beyond one handle's rules: a move committed in a
write transaction (:class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`),
leases seen across handles of a shared backend, concurrent holders, and read-only handles.

The rules of one handle are in :mod:`chanlog.testing.conformance.consumers`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from chanlog.backends.base import Backend
from chanlog.backends.consumer_store import KeepsConsumers, MovesConsumersInTransaction
from chanlog.errors import InvalidArgument, LeaseHeld, NotFound, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, PositionMove
from chanlog.testing.conformance.consumers import (
    LONG_TTL,
    SHORT_TTL,
    ConsumerFixtures,
    parked_record,
    parked_view,
    wait_out,
)
from chanlog.testing.conformance.fixtures import DEADLINE, ConformanceFixtures, OpenBackend
from chanlog.testing.events import sample_events, stored_records

__all__ = ["ConsumerSharingCases", "MovesConsumersInTransactionCases", "ReadOnlyConsumersCases"]

_EMPTY = Head(0, GENESIS_CHAIN_HASH)
_SUBJECTS = ("chanlog.>",)


def _keepers(opener: OpenBackend) -> tuple[Backend, Backend]:
    """Two handles on the test's log (skips unless the backend is shared and keeps
    consumers)."""
    first = opener()
    if not first.shared:
        pytest.skip("the backend is not shared")
    if not isinstance(first, KeepsConsumers):
        pytest.skip("the backend is not KeepsConsumers")
    return first, opener()


def _keeper(backend: Backend) -> KeepsConsumers:
    assert isinstance(backend, KeepsConsumers)
    return backend


def _move_in_transaction(backend: Backend, move: PositionMove) -> None:
    with backend.write() as transaction:
        assert isinstance(transaction, MovesConsumersInTransaction)
        transaction.move_consumer(move)


def _moves_in_transaction(backend: Backend) -> bool:
    with backend.write() as transaction:
        return isinstance(transaction, MovesConsumersInTransaction)


class MovesConsumersInTransactionCases(ConsumerFixtures):
    """:class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`: a move commits
    with the records of its transaction, rolls back with them, and is refused at once."""

    @pytest.fixture
    def mover(self, keeper: KeepsConsumers, backend: Backend) -> Backend:
        """The backend, skipping unless its transactions move consumers."""
        with backend.write() as transaction:
            if not isinstance(transaction, MovesConsumersInTransaction):
                pytest.skip("the backend's transactions are not MovesConsumersInTransaction")
        keeper.ensure_consumer("tx", 0, _SUBJECTS)
        keeper.acquire_lease("tx", "h1", LONG_TTL)
        return backend

    def test_a_move_commits_with_the_records_of_its_transaction(
        self, mover: Backend, keeper: KeepsConsumers
    ) -> None:
        records = stored_records(sample_events(3), _EMPTY)
        move = PositionMove(
            "tx", "h1", 3, handled=2, parked=(parked_record("tx", 1),), error="ValueError: boom"
        )
        with mover.write() as transaction:
            assert isinstance(transaction, MovesConsumersInTransaction)
            transaction.append(records)
            transaction.move_consumer(move)
        assert mover.head() == Head(3, records[-1].chain_hash)
        state = keeper.consumer_state("tx")
        assert state is not None
        assert (state.position, state.handled, state.parked) == (3, 2, 1)
        assert (state.last_error, state.lease_holder) == ("ValueError: boom", "h1")
        assert parked_view(keeper.parked_records("tx")) == parked_view([parked_record("tx", 1)])
        with mover.write() as transaction:  # a transaction without records moves too
            assert isinstance(transaction, MovesConsumersInTransaction)
            transaction.move_consumer(PositionMove("tx", "h1", 3, handled=1, unparked=(1,)))
        state = keeper.consumer_state("tx")
        assert state is not None
        assert (state.position, state.handled, state.parked) == (3, 3, 0)

    def test_a_move_rolls_back_with_the_records_of_its_transaction(
        self, mover: Backend, keeper: KeepsConsumers
    ) -> None:
        before = keeper.consumer_state("tx")

        def abort() -> None:
            with mover.write() as transaction:
                assert isinstance(transaction, MovesConsumersInTransaction)
                transaction.append(stored_records(sample_events(2), _EMPTY))
                transaction.move_consumer(
                    PositionMove("tx", "h1", 2, handled=2, parked=(parked_record("tx", 0),))
                )
                raise RuntimeError("abort the transaction")

        with pytest.raises(RuntimeError, match="abort"):
            abort()
        assert mover.head() == _EMPTY
        assert keeper.consumer_state("tx") == before
        assert keeper.parked_records("tx") == []

    def test_a_second_move_in_one_transaction_follows_the_first(
        self, mover: Backend, keeper: KeepsConsumers
    ) -> None:
        def behind() -> None:
            with mover.write() as transaction:
                assert isinstance(transaction, MovesConsumersInTransaction)
                transaction.move_consumer(PositionMove("tx", "h1", 5, handled=1))
                transaction.move_consumer(PositionMove("tx", "h1", 3, handled=1))

        with pytest.raises(InvalidArgument):
            behind()
        with mover.write() as transaction:
            assert isinstance(transaction, MovesConsumersInTransaction)
            transaction.move_consumer(PositionMove("tx", "h1", 5, handled=1))
            transaction.move_consumer(PositionMove("tx", "h1", 6, handled=2))
        state = keeper.consumer_state("tx")
        assert state is not None
        assert (state.position, state.handled) == (6, 3)

    @pytest.mark.parametrize(
        ("move", "error"),
        [
            (PositionMove("tx", "h2", 2, handled=2), LeaseHeld),
            (PositionMove("tx", "h1", 0, handled=2), InvalidArgument),
            (PositionMove("missing", "h1", 2, handled=2), NotFound),
        ],
        ids=["another holder", "backwards", "no such consumer"],
    )
    def test_a_refused_move_raises_at_once_inside_the_transaction(
        self,
        mover: Backend,
        keeper: KeepsConsumers,
        move: PositionMove,
        error: type[Exception],
    ) -> None:
        keeper.move_consumer(PositionMove("tx", "h1", 1))
        before = keeper.consumer_state("tx")
        raised_inside: list[Exception] = []

        def refused() -> None:
            with mover.write() as transaction:
                assert isinstance(transaction, MovesConsumersInTransaction)
                transaction.append(stored_records(sample_events(2), _EMPTY))
                try:
                    transaction.move_consumer(move)
                except Exception as exc:
                    raised_inside.append(exc)
                    raise

        with pytest.raises(error):
            refused()
        assert [type(exc) for exc in raised_inside] == [error]
        assert mover.head() == _EMPTY
        assert keeper.consumer_state("tx") == before


class ConsumerSharingCases(ConformanceFixtures):
    """Leases and moves across handles of a shared backend (skipped unless ``shared``), and
    concurrent holders (on one handle when the backend is not shared)."""

    def test_a_lease_taken_in_one_handle_is_refused_in_another(self, opener: OpenBackend) -> None:
        first_handle, second_handle = _keepers(opener)
        first, second = _keeper(first_handle), _keeper(second_handle)
        first.ensure_consumer("shared", 0, _SUBJECTS)
        taken = first.acquire_lease("shared", "one", LONG_TTL)
        assert second.consumer_state("shared") == taken
        with pytest.raises(LeaseHeld) as refused:
            second.acquire_lease("shared", "two", LONG_TTL)
        assert refused.value.holder == "one"
        assert refused.value.expires_at == pytest.approx(taken.lease_expires_at, abs=1e-3)
        for attempt in (
            lambda: second.move_consumer(PositionMove("shared", "two", 1, handled=1)),
            lambda: second.reset_consumer("shared", 0),
        ):
            with pytest.raises(LeaseHeld):
                attempt()
        if _moves_in_transaction(second_handle):
            with pytest.raises(LeaseHeld):
                _move_in_transaction(second_handle, PositionMove("shared", "two", 1, handled=1))
        first.move_consumer(PositionMove("shared", "one", 2, handled=2))
        seen = second.consumer_state("shared")
        assert seen is not None
        assert (seen.position, seen.handled) == (2, 2)
        first.release_lease("shared", "one")
        assert second.acquire_lease("shared", "two", LONG_TTL).lease_holder == "two"

    def test_a_lease_expired_in_one_handle_is_taken_over_in_another(
        self, opener: OpenBackend
    ) -> None:
        first, second = (_keeper(handle) for handle in _keepers(opener))
        first.ensure_consumer("takeover", 0, _SUBJECTS)
        first.acquire_lease("takeover", "one", SHORT_TTL)
        wait_out(SHORT_TTL)
        second.acquire_lease("takeover", "two", LONG_TTL)
        with pytest.raises(LeaseHeld) as refused:
            first.move_consumer(PositionMove("takeover", "one", 5, handled=5))
        assert refused.value.holder == "two"
        with pytest.raises(LeaseHeld):
            first.acquire_lease("takeover", "one", LONG_TTL)
        second.move_consumer(PositionMove("takeover", "two", 1, handled=1))
        state = first.consumer_state("takeover")
        assert state is not None
        assert (state.position, state.handled) == (1, 1)

    def test_concurrent_holders_never_both_move(self, opener: OpenBackend) -> None:
        handle = opener()
        if not isinstance(handle, KeepsConsumers):
            pytest.skip("the backend is not KeepsConsumers")
        first = handle
        second = _keeper(opener()) if handle.shared else handle
        first.ensure_consumer("race", 0, _SUBJECTS)
        rounds = 8
        for number in range(1, rounds + 1):
            outcomes = _race(
                [
                    lambda: _take_and_move(first, "one", number),  # noqa: B023 - joined here
                    lambda: _take_and_move(second, "two", number),  # noqa: B023
                ]
            )
            assert sorted(outcomes.values()) == ["moved", "refused"], outcomes
            winner = next(key for key, outcome in outcomes.items() if outcome == "moved")
            (first if winner == 0 else second).release_lease("race", ("one", "two")[winner])
        state = first.consumer_state("race")
        assert state is not None
        assert (state.position, state.handled, state.lease_holder) == (rounds, rounds, None)


def _take_and_move(keeper: KeepsConsumers, holder: str, position: int) -> str:
    """Take the lease and move by one record; ``"refused"`` when either step is."""
    # Refused or not, try the move: after a refused take it must be refused too.
    with contextlib.suppress(LeaseHeld):
        keeper.acquire_lease("race", holder, LONG_TTL)
    try:
        keeper.move_consumer(PositionMove("race", holder, position, handled=1))
    except LeaseHeld:
        return "refused"
    return "moved"


def _race(contenders: list[Callable[[], str]]) -> dict[int, str]:
    """Run ``contenders`` in threads released together; their outcomes by index."""
    barrier = threading.Barrier(len(contenders))
    outcomes: dict[int, str] = {}
    failures: list[BaseException] = []

    def run(index: int, contender: Callable[[], str]) -> None:
        try:
            barrier.wait(DEADLINE)
            outcomes[index] = contender()
        except BaseException as exc:  # reported below: a thread cannot fail the test
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(index, contender))
        for index, contender in enumerate(contenders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return outcomes


class ReadOnlyConsumersCases(ConformanceFixtures):
    """A read-only handle reads the consumers writers keep and refuses every consumer write
    with :class:`~chanlog.errors.StorageError` (run when the suite has ``open_read_only``)."""

    def test_a_read_only_handle_refuses_every_consumer_write(
        self, opener: OpenBackend, read_only_opener: OpenBackend
    ) -> None:
        writer = opener()
        if not isinstance(writer, KeepsConsumers):
            pytest.skip("the backend is not KeepsConsumers")
        writer.ensure_consumer("kept", 1, _SUBJECTS)
        writer.acquire_lease("kept", "h1", LONG_TTL)
        writer.move_consumer(PositionMove("kept", "h1", 3, parked=(parked_record("kept", 2),)))
        writer.release_lease("kept", "h1")
        reader = read_only_opener()
        assert isinstance(reader, KeepsConsumers)
        if self.durable or writer.shared:  # the reader's log is the writer's
            assert reader.consumer_states() == writer.consumer_states()
            assert reader.parked_records("kept") == writer.parked_records("kept")
        before = reader.consumer_states()
        writes: list[Callable[[], object]] = [
            lambda: reader.ensure_consumer("kept", 0, _SUBJECTS),
            lambda: reader.ensure_consumer("new", 0, _SUBJECTS),
            lambda: reader.acquire_lease("kept", "h2", LONG_TTL),
            lambda: reader.release_lease("kept", "h1"),
            lambda: reader.move_consumer(PositionMove("kept", "h1", 4)),
            lambda: reader.reset_consumer("kept", 0),
            lambda: reader.request_replay("kept"),
            lambda: reader.drop_parked("kept"),
            lambda: reader.delete_consumer("kept"),
        ]
        for write in writes:
            with pytest.raises(StorageError):
                write()
        assert reader.consumer_states() == before
        assert writer.consumer_state("kept") is not None
