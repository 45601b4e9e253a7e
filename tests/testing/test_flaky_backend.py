"""chanlog.testing.FlakyBackend: a memory backend whose next reads or write transactions
fail with StorageError, then work again; bad arming is refused."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.errors import InvalidArgument, StorageError
from chanlog.records import PositionMove, StoredSnapshot
from chanlog.testing import BackendConformance, FlakyBackend, OpenBackend, sample_events
from chanlog.testing.events import stored_records
from chanlog.testing.flaky import RESTARTING


class TestUnarmedFlakyBackend(BackendConformance):
    """Unarmed, it is a memory backend: every capability of its transactions included."""

    durable = False

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        return FlakyBackend

    @pytest.fixture
    def open_read_only(self) -> OpenBackend:
        return lambda: FlakyBackend(read_only=True)


def _store(backend: FlakyBackend, count: int = 3) -> chanlog.EventStore:
    store = chanlog.EventStore(backend, projections=[])
    store.append_batch(sample_events(count))
    return store


def test_nothing_fails_until_armed() -> None:
    backend = FlakyBackend()
    store = _store(backend)
    assert [record.offset for record in store] == [0, 1, 2]
    assert (backend.reads_to_fail, backend.writes_to_fail) == (0, 0)
    assert (backend.failed_reads, backend.failed_writes) == (0, 0)
    assert backend.message == RESTARTING
    assert isinstance(backend, MemoryBackend)


@pytest.mark.parametrize(
    "read",
    [
        lambda backend, stream: backend.read(0, 3),
        lambda backend, stream: backend.read_stream(stream),
        lambda backend, stream: backend.read_stream_payloads(stream),
    ],
    ids=["read", "read_stream", "read_stream_payloads"],
)
def test_the_next_reads_fail_when_called_then_reading_works(read: Any) -> None:
    backend = FlakyBackend()
    store = _store(backend)
    stream = next(iter(store)).event.streams[0]
    backend.fail_reads(2)
    assert backend.reads_to_fail == 2
    for left in (1, 0):
        with pytest.raises(StorageError, match=r"^the database is restarting"):
            read(backend, stream)  # raises on the call, not on the first next()
        assert backend.reads_to_fail == left
    assert backend.failed_reads == 2
    assert list(read(backend, stream))
    assert backend.failed_reads == 2
    assert backend.failed_writes == 0


def test_the_store_sees_the_read_failures() -> None:
    backend = FlakyBackend()
    store = _store(backend)
    backend.fail_reads(1)
    with pytest.raises(StorageError):
        list(store)
    assert len(list(store)) == 3


def test_arming_replaces_what_was_armed_and_zero_disarms() -> None:
    backend = FlakyBackend()
    backend.fail_reads(5)
    backend.fail_reads(1)
    assert backend.reads_to_fail == 1
    backend.fail_reads(0)
    assert list(backend.read(0, 1)) == []
    backend.fail_writes(4)
    backend.fail_writes(0)
    with backend.write():
        pass
    assert (backend.failed_reads, backend.failed_writes) == (0, 0)


def test_a_write_failing_at_begin_runs_nothing() -> None:
    backend = FlakyBackend()
    store = _store(backend)
    head = backend.head()
    backend.fail_writes(2)  # at="begin" by default
    for left in (1, 0):
        with pytest.raises(StorageError, match=r"^the database is restarting"):
            store.append(sample_events(1, start=3)[0])
        assert backend.writes_to_fail == left
    assert backend.head() == head
    assert backend.failed_writes == 2
    store.append(sample_events(1, start=3)[0])
    assert len(store) == 4
    assert store.verify() == 4


def test_a_write_failing_at_commit_runs_and_keeps_nothing() -> None:
    backend = FlakyBackend()
    store = _store(backend)
    head = backend.head()
    backend.ensure_consumer("c", 0, [])
    backend.acquire_lease("c", "me", 30)
    backend.fail_writes(1, at="commit")
    records = stored_records(sample_events(1, start=3), head)

    def stage_everything() -> None:
        with backend.write() as transaction:
            assert transaction.head == head  # it began
            transaction.append(records)
            transaction.save_snapshot(StoredSnapshot(3, {"p": 1}, b"x", b"\0" * 32))
            transaction.move_consumer(PositionMove("c", "me", 3, handled=3))

    with pytest.raises(StorageError, match=r"^the database is restarting"):
        stage_everything()
    assert backend.head() == head
    assert len(backend) == 3
    assert backend.find(records[0].event_id) is None
    assert backend.latest_snapshot() is None
    consumer = backend.consumer_state("c")
    assert consumer is not None
    assert consumer.position == 0
    assert (backend.writes_to_fail, backend.failed_writes) == (0, 1)
    # The writer lock was released: another thread writes the same records now.
    done = threading.Thread(target=lambda: store.append(sample_events(1, start=3)[0]))
    done.start()
    done.join(10)
    assert not done.is_alive()
    assert len(store) == 4
    assert store.verify() == 4


def test_a_write_failing_at_acknowledgement_commits_then_raises() -> None:
    """The connection dropped after the commit reached the database: everything staged is
    kept, and the caller is told it failed all the same."""
    backend = FlakyBackend()
    _store(backend)
    head = backend.head()
    backend.ensure_consumer("c", 0, [])
    backend.acquire_lease("c", "me", 30)
    backend.fail_writes(1, at="acknowledgement")
    assert backend.writes_to_fail == 1
    records = stored_records(sample_events(1, start=3), head)

    def stage_everything() -> None:
        with backend.write() as transaction:
            transaction.append(records)
            transaction.save_snapshot(StoredSnapshot(4, {"p": 1}, b"x", b"\0" * 32))
            transaction.move_consumer(PositionMove("c", "me", 4, handled=4))

    with pytest.raises(StorageError, match=r"^the database is restarting"):
        stage_everything()
    assert backend.head().length == 4
    assert backend.find(records[0].event_id) == 3
    snapshot = backend.latest_snapshot()
    assert snapshot is not None
    assert snapshot.offset == 4
    consumer = backend.consumer_state("c")
    assert consumer is not None
    assert consumer.position == 4
    assert (backend.writes_to_fail, backend.failed_writes) == (0, 1)
    with backend.write():  # the lock was released
        pass
    backend.fail_writes(1, at="acknowledgement")
    with pytest.raises(RuntimeError, match="abort"), backend.write():
        raise RuntimeError("abort")  # rolled back: an armed acknowledgement is not used up
    assert backend.writes_to_fail == 1


def test_a_transaction_failing_on_its_own_does_not_use_up_a_commit_failure() -> None:
    backend = FlakyBackend()
    backend.fail_writes(1, at="commit")
    with pytest.raises(RuntimeError, match="abort"), backend.write():
        raise RuntimeError("abort the transaction")
    assert (backend.writes_to_fail, backend.failed_writes) == (1, 0)
    with pytest.raises(StorageError), backend.write():
        pass  # an empty transaction commits too, and its commit fails
    assert (backend.writes_to_fail, backend.failed_writes) == (0, 1)


def test_failures_armed_at_both_stages_are_all_used() -> None:
    backend = FlakyBackend()
    backend.fail_writes(1, at="begin")
    backend.fail_writes(1, at="commit")
    assert backend.writes_to_fail == 2
    with pytest.raises(StorageError):
        backend.write()
    transaction = backend.write()
    with pytest.raises(StorageError), transaction:
        pass
    assert (backend.writes_to_fail, backend.failed_writes) == (0, 2)
    with backend.write():
        pass


def test_the_rest_keeps_working_while_armed() -> None:
    backend = FlakyBackend()
    store = _store(backend)
    first = next(iter(store))
    backend.fail_reads(10)
    backend.fail_writes(10)
    assert backend.head().length == 3
    assert len(backend) == 3
    assert backend.find(bytes.fromhex(first.event_id[2:])) == 0
    assert backend.stream_version(first.event.streams[0]) >= 1
    backend.ensure_consumer("c", 0, [])
    backend.acquire_lease("c", "me", 30)
    backend.move_consumer(PositionMove("c", "me", 2, handled=2))
    consumer = backend.consumer_state("c")
    assert consumer is not None
    assert consumer.position == 2
    assert (backend.reads_to_fail, backend.writes_to_fail) == (10, 10)


def test_the_message_is_the_errors() -> None:
    backend = FlakyBackend(message="primary lost; failing over")
    backend.fail_reads(1)
    with pytest.raises(StorageError) as error:
        backend.read(0, 1)
    assert str(error.value) == "primary lost; failing over"


def test_a_read_only_flaky_backend_refuses_writes_as_memory_does() -> None:
    backend = FlakyBackend(read_only=True)
    assert backend.read_only
    with pytest.raises(StorageError, match="read-only"), backend.write():
        pass
    assert backend.failed_writes == 0


def test_armed_failures_are_counted_exactly_across_threads() -> None:
    backend = FlakyBackend()
    backend.fail_reads(50)
    failures: list[int] = []
    lock = threading.Lock()

    def reader() -> None:
        failed = 0
        for _ in range(100):
            try:
                backend.read(0, 0)
            except StorageError:
                failed += 1
        with lock:
            failures.append(failed)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(failures) == 50
    assert (backend.reads_to_fail, backend.failed_reads) == (0, 50)


@pytest.mark.parametrize("count", [-1, 1.5, "2", None, True])
def test_a_count_that_is_not_a_natural_number_is_refused(count: Any) -> None:
    backend = FlakyBackend()
    with pytest.raises(InvalidArgument, match=r"fail_reads: count must be an int >= 0"):
        backend.fail_reads(count)
    with pytest.raises(ValueError, match=r"fail_writes: count must be an int >= 0"):
        backend.fail_writes(count)
    assert (backend.reads_to_fail, backend.writes_to_fail) == (0, 0)


@pytest.mark.parametrize("stage", ["enter", "Commit", "", None])
def test_an_unknown_stage_is_refused(stage: Any) -> None:
    backend = FlakyBackend()
    with pytest.raises(InvalidArgument, match="at must be 'begin', 'commit' or 'acknowledgement'"):
        backend.fail_writes(1, at=stage)
    assert backend.writes_to_fail == 0


@pytest.mark.parametrize("message", ["", None, b"restarting"])
def test_a_message_that_is_not_text_is_refused(message: Any) -> None:
    with pytest.raises(InvalidArgument, match="message must be a non-empty str"):
        FlakyBackend(message=message)


def test_memory_options_are_checked_as_memory_checks_them() -> None:
    with pytest.raises(chanlog.ConfigError, match="read_only must be true or false"):
        FlakyBackend(read_only="yes")  # type: ignore[arg-type]


# -- the consumers' writes outside a transaction ---------------------------------------------


def _consumer(backend: FlakyBackend) -> None:
    backend.ensure_consumer("c", 0, [">"])
    backend.acquire_lease("c", "me", 60.0)


def test_a_plain_position_commit_fails_when_armed_then_works() -> None:
    backend = FlakyBackend()
    _store(backend)
    _consumer(backend)
    backend.fail_consumer_writes(1, writes=["move"])
    with pytest.raises(StorageError, match="restarting"):
        backend.move_consumer(PositionMove("c", "me", 2, handled=2))
    assert backend.consumer_state("c").position == 0  # type: ignore[union-attr]
    assert (backend.consumer_faults.failed, backend.consumer_faults.to_fail) == (["move"], 0)
    backend.move_consumer(PositionMove("c", "me", 2, handled=2))
    assert backend.consumer_state("c").handled == 2  # type: ignore[union-attr]


def test_a_consumer_write_failing_at_its_acknowledgement_is_made() -> None:
    backend = FlakyBackend()
    _store(backend)
    _consumer(backend)
    backend.fail_consumer_writes(2, at="acknowledgement", writes=["move", "release"])
    with pytest.raises(StorageError):
        backend.move_consumer(PositionMove("c", "me", 3, handled=3))
    with pytest.raises(StorageError):
        backend.release_lease("c", "me")
    state = backend.consumer_state("c")
    assert state is not None and (state.position, state.lease_holder) == (3, None)


def test_only_the_consumer_writes_chosen_and_matching_fail() -> None:
    backend = FlakyBackend()
    _store(backend)
    _consumer(backend)
    backend.fail_consumer_writes(1, writes=["move"], matching=lambda move: bool(move.error))
    backend.acquire_lease("c", "me", 60.0)  # not chosen
    backend.move_consumer(PositionMove("c", "me", 1, handled=1))  # does not match
    with pytest.raises(StorageError):
        backend.move_consumer(PositionMove("c", "me", 1, error="why"))
    assert backend.consumer_state("c").last_error is None  # type: ignore[union-attr]


def test_a_refused_consumer_write_keeps_an_acknowledgement_failure_armed() -> None:
    from chanlog.errors import LeaseHeld

    backend = FlakyBackend()
    _store(backend)
    _consumer(backend)
    backend.fail_consumer_writes(1, at="acknowledgement")
    with pytest.raises(LeaseHeld):
        backend.move_consumer(PositionMove("c", "someone else", 1))
    assert backend.consumer_faults.to_fail == 1 and backend.consumer_faults.failed == []


def test_consumer_write_failures_are_armed_on_any_backend(tmp_path: Any) -> None:
    from chanlog.backends.sqlite import SqliteBackend
    from chanlog.testing import ConsumerWriteFaults

    backend = SqliteBackend(tmp_path / "log.db")
    try:
        faults = ConsumerWriteFaults(backend, message="gone")
        faults.fail(1, writes=["acquire"])
        backend.ensure_consumer("c", 0, [">"])
        with pytest.raises(StorageError, match="gone"):
            backend.acquire_lease("c", "me", 60.0)
        assert backend.acquire_lease("c", "me", 60.0).lease_holder == "me"
    finally:
        backend.close()


@pytest.mark.parametrize(
    "arming",
    [{"count": -1}, {"count": 1, "at": "later"}, {"count": 1, "writes": ["append"]}],
)
def test_bad_consumer_write_arming_is_refused(arming: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        FlakyBackend().fail_consumer_writes(**arming)
