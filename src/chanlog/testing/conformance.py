"""The backend conformance suite: what every chanlog storage backend must do.

See :mod:`chanlog.testing` for how a backend package runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import attrs
import pytest

from chanlog.backends.base import Backend
from chanlog.errors import (
    ConcurrencyError,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    NotFound,
)
from chanlog.events import MessageAcked, ObjectiveApproved, ObjectiveCreated
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.records import Head, RecordedEvent, StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing.events import (
    bytes32_of,
    message_sent,
    offsets_of,
    refused_event,
    sample_events,
    stored_records,
)
from chanlog.testing.plugins import REFUSING_PROJECTION, RefusingProjection, refusing_host

__all__ = ["BackendConformance", "OpenBackend"]

OpenBackend = Callable[[], Backend]
"""Opens the log under test. Within one test every call opens the *same* log (a new handle
on it, for durable or shared backends); the first call of a test finds it empty."""

_DEADLINE = 10.0  # seconds a test waits for something another thread or process does


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {_DEADLINE} s waiting for {what}")
        time.sleep(0.005)


class BackendConformance:
    """Pytest test class every backend runs. Subclass it as ``TestXxx`` and override the
    ``open_backend`` fixture; set ``durable = False`` for a backend whose log does not
    outlive its handle (the reopen tests are then skipped). Tests that need several handles
    on one log run when the backend says ``shared = True``.
    """

    durable: ClassVar[bool] = True
    """Whether a log survives closing its handle (reopen tests run when True)."""

    # -- fixtures a subclass may override ------------------------------------------------

    @pytest.fixture
    def open_backend(self) -> OpenBackend:
        """Override: return a callable opening the log under test (see :data:`OpenBackend`)."""
        pytest.fail(f"{type(self).__name__} must override the open_backend fixture")

    # -- fixtures the suite builds on it -------------------------------------------------

    @pytest.fixture
    def opener(self, open_backend: OpenBackend) -> Iterator[OpenBackend]:
        """``open_backend`` that also closes every handle it opened when the test ends."""
        opened: list[Backend] = []

        def open_tracked() -> Backend:
            backend = open_backend()
            opened.append(backend)
            return backend

        yield open_tracked
        for backend in opened:
            backend.close()

    @pytest.fixture
    def backend(self, opener: OpenBackend) -> Backend:
        """A handle on a new, empty log."""
        return opener()

    @pytest.fixture
    def store(self, backend: Backend) -> Iterator[EventStore]:
        """A store on ``backend`` without projections (no transition rules apply)."""
        store = EventStore(backend, projections=[])
        yield store
        store.close()

    # -- the backend protocol ------------------------------------------------------------

    def test_declares_the_backend_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.name, str)
        assert backend.name
        assert isinstance(backend.shared, bool)

    def test_a_new_log_is_empty(self, backend: Backend) -> None:
        assert backend.head() == Head(0, GENESIS_CHAIN_HASH)
        assert list(backend.read(0, 10)) == []
        assert list(backend.read_stream(message_sent(0).streams[0])) == []
        assert backend.find(bytes(32)) is None
        assert backend.stream_version("0x" + "00" * 32) == 0
        assert backend.latest_snapshot() is None

    def test_write_commits_records_exactly_as_given(self, backend: Backend) -> None:
        records = stored_records(sample_events(12), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            assert transaction.head == Head(0, GENESIS_CHAIN_HASH)
            transaction.append(records[:5])
            transaction.append(records[5:])
        assert backend.head() == Head(12, records[-1].chain_hash)
        assert list(backend.read(0, 12)) == records
        assert list(backend.read(3, 7)) == records[3:7]
        assert list(backend.read(10, 1000)) == records[10:]
        assert list(backend.read(12, 20)) == []

    def test_read_returns_a_lazy_iterator(self, backend: Backend) -> None:
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(3), transaction.head))
        reader = backend.read(0, 3)
        assert iter(reader) is reader
        assert next(reader).offset == 0
        stream = backend.read_stream(message_sent(0).streams[0])
        assert iter(stream) is stream

    def test_a_failed_write_leaves_nothing(self, backend: Backend) -> None:
        first = stored_records(sample_events(3), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            transaction.append(first)
        head = backend.head()
        doomed = stored_records(sample_events(4, start=3), head)

        def abort_after_appending() -> None:
            with backend.write() as transaction:
                transaction.append(doomed)
                raise RuntimeError("abort the transaction")

        with pytest.raises(RuntimeError, match="abort"):
            abort_after_appending()
        assert backend.head() == head
        assert list(backend.read(0, 100)) == first
        for record in doomed:
            assert backend.find(record.event_id) is None
        assert backend.stream_version(doomed[0].streams[0]) == 0
        # The writer lock was released: the next write goes through.
        with backend.write() as transaction:
            assert transaction.head == head
            transaction.append(doomed)
        assert backend.head().length == 7

    def test_transaction_sees_committed_state(self, backend: Backend) -> None:
        records = stored_records(sample_events(6, objectives=2), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            transaction.append(records)
        objective = records[0].streams[1]
        with backend.write() as transaction:
            assert transaction.head == Head(6, records[-1].chain_hash)
            assert transaction.find(records[4].event_id) == 4
            assert transaction.find(bytes(32)) is None
            assert transaction.stream_version(objective) == 3
            assert transaction.stream_version(records[2].streams[0]) == 1
            assert transaction.stream_version("0x" + "ab" * 32) == 0

    def test_find_many_agrees_with_find(self, backend: Backend) -> None:
        """For transactions that offer the optional ``find_many``."""
        records = stored_records(sample_events(5), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            if not hasattr(transaction, "find_many"):
                pytest.skip("the backend's transactions have no find_many")
            transaction.append(records[:3])
            # Its own appends count, in any order, with repeats and unknown ids.
            ids = [records[2].event_id, records[4].event_id, records[0].event_id]
            ids += [records[2].event_id, bytes(32)]
            assert transaction.find_many(ids) == [2, None, 0, 2, None]
            assert transaction.find_many(ids) == [transaction.find(each) for each in ids]
            assert transaction.find_many([]) == []

    def test_append_unless_known_refuses_a_known_id_and_leaves_nothing(
        self, backend: Backend
    ) -> None:
        """For transactions that offer the optional ``append_unless_known`` (ADR 0022)."""
        first = stored_records(sample_events(3), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            if not hasattr(transaction, "append_unless_known"):
                pytest.skip("the backend's transactions have no append_unless_known")
            assert transaction.append_unless_known([])
            assert transaction.append_unless_known(first)
        head = backend.head()
        fresh = stored_records(sample_events(5, start=3), head)
        # A known id in the middle of a batch: the records before it must not stay behind.
        clashing = [*fresh[:2], attrs.evolve(fresh[2], event_id=first[1].event_id), *fresh[3:]]
        with backend.write() as transaction:
            assert hasattr(transaction, "append_unless_known")
            assert not transaction.append_unless_known(clashing)
            assert not transaction.append_unless_known(
                [attrs.evolve(fresh[0], event_id=first[0].event_id)]
            )
            assert transaction.find(fresh[0].event_id) is None
            assert transaction.stream_version(fresh[0].streams[0]) == 0
            # The transaction goes on: the same offsets are still free.
            assert transaction.append_unless_known(fresh)
        assert backend.head() == Head(8, fresh[-1].chain_hash)
        assert list(backend.read(0, 100)) == first + fresh
        assert offsets_of(list(backend.read_stream(fresh[0].streams[0]))) == [3]

    def test_reappending_an_event_its_rules_would_now_refuse(self, backend: Backend) -> None:
        # A store may stage an append before it knows the event is in the log (ADR 0022);
        # the objective's rules refuse a second creation, which must not leak out as an
        # error for an event that is simply already there.
        objective = bytes32_of("conformance objective")
        created = ObjectiveCreated(
            objective_id=objective, objective_type="DirectFund", timestamp_ms=1
        )
        approved = ObjectiveApproved(objective_id=objective, timestamp_ms=2)
        with EventStore(backend) as store:
            received: list[int] = []
            store.subscribe(lambda record: received.append(record.offset))
            assert store.append(created, expected_version=0) == 0
            assert store.append(created) == 0
            assert store.append(created, expected_version=0) == 0  # stale, but already there
            assert store.append_batch([created, approved]) == [0, 1]
            assert store.append_batch([approved, created], expected_versions={objective: 0}) == [
                1,
                0,
            ]
            with pytest.raises(InvalidTransition):
                store.append(
                    ObjectiveCreated(
                        objective_id=objective, objective_type="DirectFund", timestamp_ms=3
                    )
                )
            assert len(store) == 2
            assert received == [0, 1]
            store.verify()

    def test_read_stream_filters_by_stream_and_range(self, backend: Backend) -> None:
        records = stored_records(sample_events(20, objectives=4), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            transaction.append(records)
        objective = records[1].streams[1]
        expected = [record for record in records if objective in record.streams]
        assert offsets_of(expected) == [1, 5, 9, 13, 17]
        assert list(backend.read_stream(objective)) == expected
        assert offsets_of(list(backend.read_stream(objective, 5))) == [5, 9, 13, 17]
        assert offsets_of(list(backend.read_stream(objective, 6, 14))) == [9, 13]
        assert list(backend.read_stream(objective, 18)) == []
        message = records[7].streams[0]
        assert list(backend.read_stream(message)) == [records[7]]
        assert backend.stream_version(objective) == 5
        assert backend.stream_version(message) == 1

    def test_read_stream_payloads_agrees_with_read_stream(self, backend: Backend) -> None:
        """For backends that offer the optional ``read_stream_payloads``."""
        read_stream_payloads = getattr(backend, "read_stream_payloads", None)
        if read_stream_payloads is None:
            pytest.skip("the backend has no read_stream_payloads")
        records = stored_records(sample_events(20, objectives=4), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            transaction.append(records)
        objective = records[1].streams[1]
        for bounds in ((), (5,), (6, 14), (18,), (0, 0)):
            expected = [
                (record.offset, record.event_type, record.payload)
                for record in backend.read_stream(objective, *bounds)
            ]
            assert [tuple(entry) for entry in read_stream_payloads(objective, *bounds)] == expected
        assert list(read_stream_payloads("0x" + "ab" * 32)) == []

    def test_find_by_event_id(self, backend: Backend) -> None:
        records = stored_records(sample_events(8), Head(0, GENESIS_CHAIN_HASH))
        with backend.write() as transaction:
            transaction.append(records)
        for record in records:
            assert backend.find(record.event_id) == record.offset
        assert backend.find(bytes(32)) is None

    def test_snapshots_save_and_latest(self, backend: Backend) -> None:
        def snapshot(offset: int, data: bytes) -> StoredSnapshot:
            return StoredSnapshot(
                offset, {"objective": 1, "channel": 2}, data, bytes([offset]) * 32
            )

        assert backend.latest_snapshot() is None
        backend.save_snapshot(snapshot(10, b"ten"))
        backend.save_snapshot(snapshot(30, b"thirty"))
        backend.save_snapshot(snapshot(20, b"twenty"))
        assert backend.latest_snapshot() == snapshot(30, b"thirty")
        assert backend.latest_snapshot(before=29) == snapshot(20, b"twenty")
        assert backend.latest_snapshot(before=20) == snapshot(20, b"twenty")
        assert backend.latest_snapshot(before=10) == snapshot(10, b"ten")
        assert backend.latest_snapshot(before=9) is None
        backend.save_snapshot(snapshot(20, b"twenty, again"))
        assert backend.latest_snapshot(before=25) == snapshot(20, b"twenty, again")
        large = snapshot(40, bytes(range(256)) * 4096)
        backend.save_snapshot(large)
        assert backend.latest_snapshot() == large

    def test_wait_reports_growth_and_timeouts(self, backend: Backend) -> None:
        assert backend.wait(0, 0.05) is False
        records = stored_records(sample_events(1), Head(0, GENESIS_CHAIN_HASH))

        def append_later() -> None:
            time.sleep(0.05)
            with backend.write() as transaction:
                transaction.append(records)

        writer = threading.Thread(target=append_later)
        writer.start()
        try:
            assert backend.wait(0, _DEADLINE) is True
        finally:
            writer.join()
        assert backend.wait(0, 0.01) is True
        assert backend.wait(1, 0.05) is False

    def test_close_is_idempotent(self, backend: Backend) -> None:
        backend.close()
        backend.close()

    # -- the store on the backend --------------------------------------------------------

    def test_offsets_are_dense_and_in_commit_order(self, store: EventStore) -> None:
        events = sample_events(25)
        offsets = [store.append(event) for event in events[:5]]
        offsets += store.append_batch(events[5:20])
        offsets += [store.append(event) for event in events[20:]]
        assert offsets == list(range(25))
        assert len(store) == 25
        assert [record.event for record in store.read_from(0)] == events
        assert [record.offset for record in store.read_from(0)] == offsets

    def test_a_batch_with_a_refused_event_writes_nothing(self, backend: Backend) -> None:
        with EventStore(
            backend, plugins=refusing_host(), projections=[REFUSING_PROJECTION]
        ) as store:
            store.append_batch(sample_events(3))
            received: list[int] = []
            store.subscribe(lambda record: received.append(record.offset))
            batch = [*sample_events(4, start=3), refused_event(), *sample_events(2, start=7)]
            with pytest.raises(InvalidTransition) as refused:
                store.append_batch(batch)
            assert refused.value.index == 4
            with pytest.raises(InvalidEvent) as malformed:
                store.append_batch([*sample_events(2, start=3), object()])  # type: ignore[list-item]
            assert malformed.value.index == 2
            assert len(store) == 3
            assert backend.head().length == 3
            assert all(backend.find(bytes.fromhex(e.event_id[2:])) is None for e in batch)
            assert backend.stream_version(batch[0].streams[0]) == 0
            projection = store.projection(REFUSING_PROJECTION)
            assert isinstance(projection, RefusingProjection)
            assert projection.folded == 3
            assert received == []
            assert store.append_batch(sample_events(2, start=3)) == [3, 4]
            assert received == [3, 4]
            store.verify()

    def test_reappending_an_event_is_idempotent(self, store: EventStore) -> None:
        events = sample_events(4)
        received: list[int] = []
        store.subscribe(lambda record: received.append(record.offset))
        assert store.append(events[0]) == 0
        assert store.append(events[0]) == 0
        assert store.append_batch([events[1], events[2], events[1]]) == [1, 2, 1]
        assert store.append_batch([events[2], events[0]]) == [2, 0]
        assert store.append_batch([events[0], events[3]]) == [0, 3]
        assert len(store) == 4
        assert received == [0, 1, 2, 3]
        head = store.backend.head()
        assert store.append(events[3]) == 3
        assert store.backend.head() == head

    def test_expected_version(self, store: EventStore) -> None:
        events = sample_events(6, objectives=1)
        message = events[0].message_id
        objective = events[0].objective_id
        assert store.append(events[0], expected_version=0) == 0
        acked = MessageAcked(message_id=message, peer_id="peer-0", timestamp_ms=1)
        with pytest.raises(ConcurrencyError) as stale:
            store.append(acked, expected_version=0)
        assert (stale.value.stream, stale.value.expected, stale.value.actual) == (
            message.lower(),
            0,
            1,
        )
        with pytest.raises(ConcurrencyError):
            store.append(events[1], expected_version=1)
        assert len(store) == 1
        assert store.append(acked, expected_version=1) == 1
        assert store.stream_version(message) == 2
        with pytest.raises(ConcurrencyError):
            store.append_batch(events[1:3], expected_versions={objective: 5})
        assert len(store) == 2
        assert store.append_batch(events[1:3], expected_versions={objective.upper(): 1}) == [2, 3]
        assert store.stream_version(objective) == 3

    def test_read_range_bounds(self, store: EventStore) -> None:
        store.append_batch(sample_events(10))

        def offsets(records: Iterator[RecordedEvent]) -> list[int]:
            return [record.offset for record in records]

        assert offsets(store.read_range(2, 5)) == [2, 3, 4]
        assert offsets(store.read_range(7, 100)) == [7, 8, 9]
        assert offsets(store.read_range(10, 20)) == []
        assert offsets(store.read_range(15, 15)) == []
        assert offsets(store.read_range(4, 4)) == []
        assert offsets(store.read_from(8)) == [8, 9]
        assert offsets(store.read_from(10)) == []
        with pytest.raises(InvalidArgument):
            store.read_range(-1, 3)
        with pytest.raises(InvalidArgument):
            store.read_range(0, -3)
        with pytest.raises(InvalidArgument):
            store.read_range(5, 2)
        with pytest.raises(InvalidArgument):
            store.read_from(-1)

    def test_read_stream_and_get_through_the_store(self, store: EventStore) -> None:
        events = sample_events(12, objectives=3)
        store.append_batch(events)
        objective = events[2].objective_id
        records = list(store.read_stream(objective.upper()))
        assert [record.offset for record in records] == [2, 5, 8, 11]
        assert [record.event for record in records] == [events[2], events[5], events[8], events[11]]
        assert [record.offset for record in store.read_stream(objective, 3, 9)] == [5, 8]
        assert store.stream_version(objective) == 4
        record = store.get(events[7].event_id)
        assert (record.offset, record.event) == (7, events[7])
        with pytest.raises(NotFound):
            store.get("0x" + "00" * 32)

    def test_concurrent_appends_from_ten_threads(self, store: EventStore) -> None:
        per_thread = 12
        results: dict[int, list[int]] = {}
        failures: list[BaseException] = []
        barrier = threading.Barrier(10)

        def work(worker: int) -> None:
            try:
                events = sample_events(per_thread, salt=f"thread-{worker}:")
                barrier.wait()
                offsets = [store.append(event) for event in events[:8]]
                offsets += store.append_batch(events[8:])
                results[worker] = offsets
            except BaseException as exc:  # surfaced below: a thread cannot fail the test
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        every = sorted(offset for offsets in results.values() for offset in offsets)
        assert every == list(range(10 * per_thread))
        for offsets in results.values():
            assert offsets == sorted(offsets)
        records = list(store.read_from(0))
        assert [record.offset for record in records] == list(range(10 * per_thread))
        assert len({record.event_id for record in records}) == 10 * per_thread
        assert store.verify() == 10 * per_thread

    def test_subscribe_catches_up_then_goes_live(self, store: EventStore) -> None:
        store.append_batch(sample_events(40))
        received: list[int] = []
        started = threading.Event()

        def append_more() -> None:
            started.set()
            for number in range(40, 80):
                store.append(message_sent(number))

        writer = threading.Thread(target=append_more)
        writer.start()
        started.wait()
        subscription = store.subscribe(lambda record: received.append(record.offset), 10)
        writer.join()
        _wait_until(lambda: len(received) >= 70, "the subscription to reach offset 79")
        assert received == list(range(10, 80))
        assert not subscription.failed

    def test_hash_chain_and_verify(self, store: EventStore) -> None:
        store.append_batch(sample_events(2300))
        chain = GENESIS_CHAIN_HASH
        for record in store.read_from(0):
            chain = chain_next(chain, bytes.fromhex(record.event_id[2:]))
            assert record.chain_hash == "0x" + chain.hex()
        assert store.backend.head() == Head(2300, chain)
        calls: list[tuple[int, int]] = []
        assert store.verify(progress=lambda done, total: calls.append((done, total))) == 2300
        assert calls == [(1000, 2300), (2000, 2300), (2300, 2300)]

    def test_verify_an_empty_log(self, store: EventStore) -> None:
        calls: list[tuple[int, int]] = []
        assert store.verify(progress=lambda done, total: calls.append((done, total))) == 0
        assert calls == [(0, 0)]

    def test_a_wrong_chain_hash_is_caught_by_verify(self, backend: Backend) -> None:
        records = stored_records(sample_events(5), Head(0, GENESIS_CHAIN_HASH))
        forged = attrs.evolve(records[3], chain_hash=bytes(32))
        with backend.write() as transaction:
            transaction.append([*records[:3], forged, records[4]])
        with EventStore(backend, projections=[]) as store, pytest.raises(IntegrityError) as bad:
            store.verify()
        assert bad.value.offset == 3

    def test_close_is_idempotent_through_the_store(self, store: EventStore) -> None:
        store.append(message_sent(0))
        store.close()
        store.close()
        assert store.closed

    # -- durable backends ----------------------------------------------------------------

    def test_reopen_continues_offsets_and_chain(self, opener: OpenBackend) -> None:
        if not self.durable:
            pytest.skip("the backend is not durable")
        events = sample_events(30, objectives=3)
        with EventStore(opener(), projections=[]) as store:
            store.append_batch(events[:20])
            for event in events[20:25]:
                store.append(event)
            head = store.backend.head()
            store.backend.save_snapshot(StoredSnapshot(20, {"objective": 1}, b"state", b"h" * 32))
        with EventStore(opener(), projections=[]) as store:
            assert store.backend.head() == head
            assert len(store) == 25
            assert store.stream_version(events[0].objective_id) == 9
            assert store.get(events[24].event_id).offset == 24
            assert store.append(events[0]) == 0
            assert store.append_batch(events[25:]) == [25, 26, 27, 28, 29]
            assert [record.event for record in store.read_from(0)] == events
            # Every record checks out; the raw snapshot announced by no snapshot-created
            # event is what verify reports (the trace of a cut tail, ADR 0024).
            with pytest.raises(IntegrityError, match=r"offset 20: .*no snapshot-created"):
                store.verify()
            assert store.backend.latest_snapshot() == StoredSnapshot(
                20, {"objective": 1}, b"state", b"h" * 32
            )

    # -- shared backends -----------------------------------------------------------------

    def test_two_handles_append_to_one_log(self, opener: OpenBackend) -> None:
        first = opener()
        if not first.shared:
            pytest.skip("the backend is not shared")
        second = opener()
        with (
            EventStore(first, projections=[]) as one,
            EventStore(second, projections=[]) as two,
        ):
            offsets = []
            for number in range(0, 20, 2):
                offsets.append(one.append(message_sent(number)))
                offsets.append(two.append(message_sent(number + 1)))
            assert offsets == list(range(20))
            assert one.append(message_sent(1)) == 1  # idempotent across handles
            assert two.append_batch(sample_events(5, start=20)) == list(range(20, 25))
            assert one.refresh() == 25
            assert [record.event for record in one.read_from(0)] == sample_events(25)
            assert one.verify() == 25
            assert two.verify() == 25

    def test_a_subscriber_sees_appends_from_another_handle(self, opener: OpenBackend) -> None:
        first = opener()
        if not first.shared:
            pytest.skip("the backend is not shared")
        second = opener()
        with (
            EventStore(first, projections=[]) as watcher,
            EventStore(second, projections=[]) as writer,
        ):
            writer.append_batch(sample_events(3))
            received: list[int] = []
            watcher.subscribe(lambda record: received.append(record.offset), 0)
            assert first.wait(3, 0.01) is False
            writer.append_batch(sample_events(4, start=3))
            assert first.wait(3, _DEADLINE) is True
            _wait_until(lambda: len(received) >= 7, "the other handle's appends")
            assert received == list(range(7))
