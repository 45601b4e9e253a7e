"""EventStore: offsets, batches, idempotency, versions, reads, chain, lifecycle."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chanlog import (
    ChanlogError,
    ConcurrencyError,
    EventStore,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    NotFound,
    ObjectiveCreated,
    RecordedEvent,
    StateSigned,
    codec,
)
from chanlog.backends.memory import MemoryBackend
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next
from chanlog.signals import event_appended
from chanlog_samples import CHANNEL

Signed = Callable[..., StateSigned]


def test_offsets_are_dense_and_zero_based(store: EventStore, signed: Signed) -> None:
    assert len(store) == 0
    assert [store.append(signed(t)) for t in range(5)] == [0, 1, 2, 3, 4]
    assert store.append_batch([signed(t) for t in range(5, 8)]) == [5, 6, 7]
    assert len(store) == 8
    assert [r.offset for r in store] == list(range(8))


def test_records_carry_id_event_chain_and_timestamp(store: EventStore, signed: Signed) -> None:
    events = [signed(t) for t in range(3)]
    store.append_batch(events)
    chain = GENESIS_CHAIN_HASH
    for record, event in zip(store.read_from(0), events, strict=True):
        assert isinstance(record, RecordedEvent)
        assert record.event == event
        assert record.event_id == event.event_id
        assert record.event_type == "state-signed"
        assert record.timestamp_ms == event.timestamp_ms
        chain = chain_next(chain, bytes.fromhex(event.event_id[2:]))
        assert record.chain_hash == "0x" + chain.hex()


def test_reappend_is_idempotent_and_silent(store: EventStore, signed: Signed) -> None:
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset))
    raw: list[int] = []

    def receiver(sender: object, record: RecordedEvent) -> None:
        raw.append(record.offset)

    event_appended.connect(receiver, sender=store)
    try:
        first = store.append(signed(1))
        store.append(signed(2))
        assert store.append(signed(1)) == first
        # A decoded copy (same content, different object) is the same fact.
        copy = codec.decode_event(
            "state-signed", signed(1).canonical_json(), store.plugins.event_types
        )
        assert store.append(copy) == first
        assert store.append_batch([signed(2), signed(1)]) == [1, 0]
        assert len(store) == 2
        assert seen == [0, 1]
        assert raw == [0, 1]
    finally:
        event_appended.disconnect(receiver, sender=store)


def test_duplicate_within_a_batch_is_written_once(store: EventStore, signed: Signed) -> None:
    assert store.append_batch([signed(1), signed(2), signed(1)]) == [0, 1, 0]
    assert len(store) == 2


def test_batch_with_invalid_envelope_writes_nothing(store: EventStore, signed: Signed) -> None:
    store.append(signed(0))
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset))
    good = {"type": "state-signed", "payload": codec.to_payload(signed(5))}
    bad_payload = codec.to_payload(signed(6)) | {"signer": "0x1234"}
    bad = {"type": "state-signed", "payload": bad_payload}
    with pytest.raises(InvalidEvent) as info:
        store.append_batch([signed(1), good, bad, signed(7)])
    assert info.value.index == 2
    assert info.value.field == "signer"
    assert "batch[2]" in str(info.value) and "signer" in str(info.value)
    assert len(store) == 1
    assert seen == []
    # The good items alone go through.
    assert store.append_batch([signed(1), good]) == [1, 2]


def test_batch_refuses_non_events_and_unregistered_types(store: EventStore, signed: Signed) -> None:
    import attrs

    from chanlog import Event

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Unregistered(Event):
        event_type = "not-registered"

    with pytest.raises(InvalidEvent) as info:
        store.append_batch([signed(1), "nope"])  # type: ignore[list-item]
    assert info.value.index == 1
    with pytest.raises(InvalidEvent, match="not registered") as info:
        store.append_batch([signed(1), Unregistered(timestamp_ms=1)])
    assert info.value.index == 1
    with pytest.raises(InvalidEvent, match="not registered"):
        store.append(Unregistered(timestamp_ms=1))
    assert len(store) == 0


def test_empty_batch(store: EventStore) -> None:
    assert store.append_batch([]) == []
    assert len(store) == 0


def test_expected_version(store: EventStore, signed: Signed) -> None:
    assert store.append(signed(0), expected_version=0) == 0
    assert store.stream_version(CHANNEL) == 1
    with pytest.raises(ConcurrencyError) as info:
        store.append(signed(1), expected_version=0)
    assert (info.value.stream, info.value.expected, info.value.actual) == (CHANNEL, 0, 1)
    assert len(store) == 1
    assert store.append(signed(1), expected_version=1) == 1
    # Idempotent redelivery wins over a now-stale expectation.
    assert store.append(signed(1), expected_version=1) == 1
    with pytest.raises(ConcurrencyError):
        store.append_batch([signed(2), signed(3)], expected_versions={CHANNEL.upper(): 1})
    assert store.append_batch([signed(2), signed(3)], expected_versions={CHANNEL: 2}) == [2, 3]
    other = "0x" + "d2" * 32
    assert store.append(signed(0, other), expected_version=0) == 4


def test_expected_version_needs_a_stream(store: EventStore) -> None:
    from chanlog import MessageDropped

    dropped = MessageDropped(peer_id="p", reason="r", error_code="decode_failed", timestamp_ms=1)
    with pytest.raises(InvalidEvent, match="no entity stream"):
        store.append(dropped, expected_version=0)


def test_read_range_semantics(store: EventStore, signed: Signed) -> None:
    store.append_batch([signed(t) for t in range(10)])

    def offsets(start: int, end: int) -> list[int]:
        return [r.offset for r in store.read_range(start, end)]

    assert offsets(2, 5) == [2, 3, 4]
    assert offsets(8, 100) == [8, 9]
    assert offsets(10, 20) == []
    assert offsets(15, 20) == []
    assert offsets(3, 3) == []
    for bad in [(-1, 3), (3, -1), (5, 4)]:
        with pytest.raises(InvalidArgument):
            list(store.read_range(*bad))
    with pytest.raises(InvalidArgument):
        store.read_from(-1)
    with pytest.raises(InvalidArgument):
        store.read_range(1.5, 3)  # type: ignore[arg-type]
    assert [r.offset for r in store.read_from(7)] == [7, 8, 9]
    assert list(store.read_from(50)) == []


def test_reads_are_lazy(store: EventStore, signed: Signed) -> None:
    store.append_batch([signed(t) for t in range(3)])
    iterator = store.read_from(0)
    store.append(signed(3))  # appended before the iterator is consumed
    assert [r.offset for r in iterator] == [0, 1, 2, 3]


def test_read_stream(store: EventStore, signed: Signed) -> None:
    other = "0x" + "D2" * 32
    store.append_batch([signed(0), signed(0, other), signed(1), signed(1, other), signed(2)])
    assert [r.offset for r in store.read_stream(CHANNEL)] == [0, 2, 4]
    assert [r.offset for r in store.read_stream(other)] == [1, 3]
    assert [r.offset for r in store.read_stream(other.lower())] == [1, 3]
    assert [r.offset for r in store.read_stream(CHANNEL, start=1, end=4)] == [2]
    assert list(store.read_stream("0x" + "00" * 32)) == []
    with pytest.raises(InvalidArgument):
        list(store.read_stream(5))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        list(store.read_stream(CHANNEL, start=-1))
    with pytest.raises(InvalidArgument):
        list(store.read_stream(CHANNEL, end=-1))


def test_multi_stream_events(store: EventStore) -> None:
    from chanlog import MessageSent

    objective = "0x" + "0b" * 32
    message = "0x" + "3e" * 32
    store.append(
        ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
    )
    store.append(
        MessageSent(message_id=message, peer_id="p", objective_id=objective, timestamp_ms=2)
    )
    assert [r.event_type for r in store.read_stream(objective)] == [
        "objective-created",
        "message-sent",
    ]
    assert [r.offset for r in store.read_stream(message)] == [1]


def test_get_by_event_id(store: EventStore, signed: Signed) -> None:
    store.append_batch([signed(0), signed(1)])
    assert store.get(signed(1).event_id).offset == 1
    with pytest.raises(NotFound):
        store.get("0x" + "00" * 32)
    with pytest.raises(InvalidArgument):
        store.get("not hex")


def test_verify_detects_tampering_in_memory(signed: Signed) -> None:
    backend = MemoryBackend()
    store = EventStore(backend, projections=[])
    store.append_batch([signed(t) for t in range(5)])
    progress: list[tuple[int, int]] = []
    assert store.verify(progress=lambda done, total: progress.append((done, total))) == 5
    assert progress[-1] == (5, 5)
    payloads = backend._payloads
    original = payloads[3]
    payloads[3] = original.replace(b'"turn_num":3', b'"turn_num":4')
    with pytest.raises(IntegrityError, match="does not match its payload") as info:
        store.verify()
    assert info.value.offset == 3
    payloads[3] = original
    payloads[1], payloads[2] = payloads[2], payloads[1]
    with pytest.raises(IntegrityError) as info:
        store.verify()
    assert info.value.offset == 1
    payloads[1], payloads[2] = payloads[2], payloads[1]
    payloads[2] = payloads[2].decode()  # type: ignore[call-overload]
    with pytest.raises(IntegrityError, match="not bytes") as info:
        store.verify()
    assert info.value.offset == 2
    payloads[2] = payloads[2].encode()  # type: ignore[attr-defined]
    backend._chains[64] ^= 1  # the chain hash of offset 2
    with pytest.raises(IntegrityError, match="chain hash") as info:
        store.verify()
    assert info.value.offset == 2


def test_constructor_options(signed: Signed) -> None:
    from chanlog import PluginError
    from chanlog.serializers import JsonSerializer

    with EventStore(serializer=JsonSerializer(), projections=[]) as store:
        store.append(signed(1))
        assert store.serializer.name == "json"
        assert store.backend.name == "memory"
        assert store.projections == {}
        with pytest.raises(NotFound):
            store.projection("objective")
        assert "memory" in repr(store)
    with pytest.raises(PluginError, match="installed: json"):
        EventStore(serializer="yaml", projections=[])
    with pytest.raises(PluginError, match="no projection named"):
        EventStore(projections=["nope"])
    from chanlog import ConfigError

    with pytest.raises(ConfigError):
        MemoryBackend(path="x")


def test_close_is_idempotent_and_final(signed: Signed) -> None:
    store = EventStore(projections=[])
    sub = store.subscribe(lambda r: None)
    store.close()
    store.close()
    assert store.closed
    assert repr(store) == "<EventStore backend=memory closed>"
    assert not sub.active
    with pytest.raises(ChanlogError, match="closed"):
        store.append(signed(1))


def test_reopening_a_backend_replays_it(signed: Signed) -> None:
    backend = MemoryBackend()
    with EventStore(backend, projections=[]) as store:
        store.append_batch([signed(t) for t in range(4)])
    again = EventStore(backend, projections=[])
    assert len(again) == 4
    assert again.append(signed(4)) == 4
    again.verify()


def test_opening_a_log_with_an_undecodable_record(signed: Signed) -> None:
    backend = MemoryBackend()
    with EventStore(backend, projections=[]) as store:
        store.append_batch([signed(t) for t in range(3)])
    backend._payloads[1] = b'{"broken": true}'
    # Projections must fold every record, so opening refuses, naming the offset...
    with pytest.raises(IntegrityError, match="outside chanlog") as info:
        EventStore(backend, projections=["messages"])
    assert info.value.offset == 1
    # ...while a store without projections opens without decoding, and verify() explains.
    bare = EventStore(backend, projections=[])
    assert len(bare) == 3
    with pytest.raises(IntegrityError) as info:
        bare.verify()
    assert info.value.offset == 1


def test_a_refused_memory_commit_leaves_no_partial_batch() -> None:
    from typing import Any

    import attrs

    from chanlog import Event, PluginHost, StorageError, hookimpl

    kinds: list[type[Event]] = []
    for number in range(257):
        cls = attrs.make_class(
            f"Kind{number}", {}, bases=(Event,), frozen=True, slots=True, kw_only=True
        )
        assert issubclass(cls, Event)
        cls.event_type = f"kind-{number}"
        kinds.append(cls)

    class Kinds:
        @hookimpl
        def chanlog_register_event_types(self, register: Callable[[Any], None]) -> None:
            for cls in kinds:
                register(cls)

    host = PluginHost(load_entry_points=False)
    host.register(Kinds(), name="kinds")
    backend = MemoryBackend()
    store = EventStore(backend, plugins=host, projections=[])
    for number in range(256):
        store.append(kinds[number](timestamp_ms=number))
    with pytest.raises(StorageError, match="257th event type"):
        store.append_batch([kinds[0](timestamp_ms=1000), kinds[256](timestamp_ms=1001)])
    assert len(store) == len(backend) == 256
    assert backend.head().length == 256
    assert store.verify() == 256
    assert store.append(kinds[1](timestamp_ms=2000)) == 256
