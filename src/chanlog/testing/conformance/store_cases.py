"""Conformance cases for an :class:`~chanlog.store.EventStore` on the backend: dense offsets,
atomic batches, idempotency, expected versions, reads, threads, subscriptions, the hash
chain and ``verify()``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import pytest

from chanlog.backends.base import Backend
from chanlog.backends.capabilities import ReadsStreamPayloads
from chanlog.errors import (
    ConcurrencyError,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    NotFound,
)
from chanlog.events import MessageAcked, MessageSent
from chanlog.events.base import Event
from chanlog.fields import ENTITY_ID_RULE
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.payloads import MAX_PAYLOAD_BYTES, PAYLOAD_SIZE_RULE
from chanlog.records import Head, RecordedEvent
from chanlog.store import EventStore
from chanlog.testing.conformance.fixtures import ConformanceFixtures, wait_until
from chanlog.testing.events import message_sent, refused_event, sample_events, stored_records
from chanlog.testing.plugins import (
    REFUSING_PROJECTION,
    DocumentNoted,
    EntityNoted,
    RefusingProjection,
    refusing_host,
)

__all__ = ["StoreCases"]


def _refused_every_way(
    store: EventStore, bad: Event, *alone: Event | Mapping[str, Any], rule: str
) -> list[InvalidEvent]:
    """Append ``bad`` every way (alone, after an event in a batch, at the log's end, which
    is offset 2) and each of ``alone`` alone, each refused with :class:`InvalidEvent` for
    ``rule`` naming the index its way gives; the refusals."""
    appends: list[tuple[Callable[[], object], int | None]] = [
        (functools.partial(store.append, item), None) for item in (bad, *alone)
    ]
    appends.append((lambda: store.append_batch([*sample_events(1, start=2), bad]), 1))
    appends.append((lambda: store.append_at(2, [bad]), 0))
    refusals: list[InvalidEvent] = []
    for append, index in appends:
        with pytest.raises(InvalidEvent) as refused:
            append()
        assert refused.value.rule == rule
        assert refused.value.index == index
        refusals.append(refused.value)
    return refusals


class StoreCases(ConformanceFixtures):
    """What the store promises (DESIGN section 3), on the backend under test."""

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

    def test_an_entity_id_with_a_nul_is_refused_before_anything_is_written(
        self, backend: Backend
    ) -> None:
        """Every backend keeps the same rule (ADR 0070): an entity id holds no NUL character,
        which PostgreSQL's text cannot store; the store refuses it as it encodes the event,
        naming the type, the field and the rule. A NUL elsewhere in a payload is stored."""
        with EventStore(backend, plugins=refusing_host(), projections=[]) as store:
            store.append_batch(sample_events(2))
            bad = EntityNoted(entity="left\x00right", timestamp_ms=1)
            envelope = {"type": bad.event_type, "payload": {"entity": "a\x00", "note": ""}}
            for refused in _refused_every_way(store, bad, envelope, rule=ENTITY_ID_RULE):
                assert refused.event_type == "conformance-entity-noted"
                assert refused.field == "entity"
                assert "conformance-entity-noted.entity" in str(refused)
            assert len(store) == 2
            assert backend.head().length == 2
            assert backend.find(bytes.fromhex(bad.event_id[2:])) is None
            # No entity id holds a NUL: asking after one finds nothing, on every backend.
            assert backend.stream_version("left\x00right") == 0
            assert store.stream_version("left\x00right") == 0
            assert list(store.read_stream("left\x00right")) == []
            if isinstance(backend, ReadsStreamPayloads):
                assert list(backend.read_stream_payloads("left\x00right")) == []
            more = sample_events(1, start=2)
            assert store.append_batch(more, expected_versions={"left\x00right": 0}) == [2]
            kept = EntityNoted(entity="Left Right", note="a NUL \x00 in a note", timestamp_ms=1)
            assert store.append(kept) == 3
            assert [record.event for record in store.read_stream("left right")] == [kept]
            assert store.verify() == 4

    def test_a_payload_over_the_size_limit_is_refused_before_anything_is_written(
        self, backend: Backend
    ) -> None:
        """Every backend keeps the same limit (ADR 0075): a payload whose canonical JSON is
        longer than ``MAX_PAYLOAD_BYTES`` is refused as the event is encoded, naming the type,
        its largest field, the size and the rule; one of exactly that size is stored, read
        and verified."""
        with EventStore(backend, plugins=refusing_host(), projections=[]) as store:
            store.append_batch(sample_events(2))
            room = MAX_PAYLOAD_BYTES - len(
                DocumentNoted(entity="e", timestamp_ms=1).canonical_json()
            )
            over = DocumentNoted(entity="e", body="x" * (room + 1), timestamp_ms=1)
            for refused in _refused_every_way(store, over, rule=PAYLOAD_SIZE_RULE):
                assert refused.event_type == "conformance-document-noted"
                assert refused.field == "body"
                assert f"{MAX_PAYLOAD_BYTES + 1} bytes" in str(refused)
            assert len(store) == 2
            assert backend.head().length == 2
            at_limit = DocumentNoted(entity="e", body="x" * room, timestamp_ms=1)
            assert store.append(at_limit) == 2
            [record] = store.read_range(2, 3)
            assert record.event_id == at_limit.event_id
            assert len(record.event.canonical_json()) == MAX_PAYLOAD_BYTES
            assert store.verify() == 3

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

    def test_an_event_naming_one_entity_twice_is_in_its_stream_once(
        self, store: EventStore
    ) -> None:
        """A message whose id is its objective's (hex case aside): its stream holds it
        once, whatever the backend, and ``verify()`` finds the index right."""
        entity = "0x" + "ab" * 32
        sent = MessageSent(
            message_id=entity, objective_id="0x" + "AB" * 32, peer_id="peer", timestamp_ms=1
        )
        assert sent.streams == (entity, entity)  # as the record is filed
        assert store.append(sent) == 0
        assert store.stream_version(entity) == 1
        acked = MessageAcked(message_id=entity, peer_id="peer", timestamp_ms=2)
        assert store.append(acked, expected_version=1) == 1
        assert [record.offset for record in store.read_stream(entity)] == [0, 1]
        assert store.verify() == 2

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
        wait_until(lambda: len(received) >= 70, "the subscription to reach offset 79")
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
