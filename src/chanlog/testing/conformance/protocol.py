"""Conformance cases for the :class:`~chanlog.backends.base.Backend` protocol itself: what a
backend does when driven directly, without a store on top."""

from __future__ import annotations

import threading
import time

import pytest

from chanlog.backends.base import Backend
from chanlog.errors import InvalidTransition
from chanlog.events import ObjectiveApproved, ObjectiveCreated
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing.conformance.fixtures import DEADLINE, ConformanceFixtures
from chanlog.testing.events import (
    bytes32_of,
    message_sent,
    offsets_of,
    sample_events,
    stored_records,
)

__all__ = ["BackendProtocolCases"]


class BackendProtocolCases(ConformanceFixtures):
    """The backend protocol: heads, writes and rollbacks, reads by range and stream, lookup,
    stream versions, snapshots, ``wait`` and ``close``."""

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
            assert backend.wait(0, DEADLINE) is True
        finally:
            writer.join()
        assert backend.wait(0, 0.01) is True
        assert backend.wait(1, 0.05) is False

    def test_close_is_idempotent(self, backend: Backend) -> None:
        backend.close()
        backend.close()
