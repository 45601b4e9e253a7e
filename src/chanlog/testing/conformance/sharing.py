"""Conformance cases for durable backends (a log outlives its handle) and shared ones
(several handles append to one log)."""

from __future__ import annotations

import pytest

from chanlog.errors import IntegrityError
from chanlog.records import StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing.conformance.fixtures import (
    DEADLINE,
    ConformanceFixtures,
    OpenBackend,
    wait_until,
)
from chanlog.testing.events import message_sent, sample_events

__all__ = ["DurableCases", "SharedCases"]


class DurableCases(ConformanceFixtures):
    """A durable log reopens with its records, chain and snapshots (skipped unless
    :attr:`~ConformanceFixtures.durable`)."""

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


class SharedCases(ConformanceFixtures):
    """Two handles on one log append and see each other's appends (skipped unless the
    backend declares ``shared = True``)."""

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
            assert first.wait(3, DEADLINE) is True
            wait_until(lambda: len(received) >= 7, "the other handle's appends")
            assert received == list(range(7))
