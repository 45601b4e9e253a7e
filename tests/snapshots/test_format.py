"""The per-entity snapshot format: layout, verification of every claim, and reading one
entity without parsing the others (counted, never timed)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from chanlog import EventStore
from chanlog.backends.memory import MemoryBackend
from chanlog.errors import DecodeError, NotFound
from chanlog.events import ChannelCreated, StateSigned
from chanlog.events.base import Event
from chanlog.hashing import keccak256
from chanlog.plugins import PluginHost, hookimpl
from chanlog.projections import ChannelProjection
from chanlog.reconstruct import StateReconstructor
from chanlog.records import StoredSnapshot
from chanlog.snapshots import (
    SNAPSHOT_FORMAT,
    decode_snapshot,
    encode_snapshot,
    open_snapshot,
)
from chanlog.snapshots import manager as manager_module
from chanlog.snapshots.codec import COMPRESS_FROM, COMPRESSED
from chanlog.snapshots.view import SnapshotView
from chanlog.workload import Workload

A = "0x" + "a1" * 20
B = "0x" + "b2" * 20


def channel_id(number: int) -> str:
    return f"0x{number:064x}"


def channel_events(cid: str, turns: int) -> list[Event]:
    events: list[Event] = [
        ChannelCreated(channel_id=cid, participants=(A, B), challenge_duration=60, timestamp_ms=0)
    ]
    events += [
        StateSigned(
            channel_id=cid,
            turn_num=turn,
            state_hash=f"0x{turn:064x}",
            signer=A,
            signature=f"0x{turn:0130x}",
            timestamp_ms=turn,
        )
        for turn in range(1, turns + 1)
    ]
    return events


def interleaved(channels: int, turns: int) -> list[Event]:
    """``channels`` channels of ``turns`` signed turns each, interleaved turn by turn."""
    lives = [channel_events(channel_id(n + 1), turns) for n in range(channels)]
    return [life[i] for i in range(turns + 1) for life in lives]


def forged(real: StoredSnapshot, data: bytes, versions: dict[str, int] | None = None) -> Any:
    """A snapshot whose hash matches its (bad) bytes: only the other checks can catch it."""
    return StoredSnapshot(real.offset, versions or real.versions, data, keccak256(data))


@pytest.fixture
def store() -> EventStore:
    store = EventStore()
    store.append_batch(interleaved(channels=3, turns=4))
    return store


def test_layout_header_line_then_one_canonical_slice_per_entity(store: EventStore) -> None:
    snapshot = store.snapshot()
    header_bytes, body = snapshot.data.split(b"\n", 1)
    header = orjson.loads(header_bytes)
    assert header["format"] == SNAPSHOT_FORMAT == 2
    assert header["offset"] == snapshot.offset == 15
    channel = store.projection("channel")
    section = header["projections"]["channel"]
    assert section["schema_version"] == channel.schema_version
    assert "states" not in section["data"] and "index" in section["data"]
    ids = [entry[0] for entry in section["entities"]]
    assert ids == sorted(channel_id(n + 1) for n in range(3))
    for entity_id, start, length in section["entities"]:
        piece = body[start : start + length]
        expected = channel.dump_state(channel.get(entity_id))  # type: ignore[attr-defined]
        assert piece == orjson.dumps(expected, option=orjson.OPT_SORT_KEYS)
    # Equal states, equal bytes: the same snapshot encoded again is identical.
    again = encode_snapshot(snapshot.offset, store.projections)
    assert again.data == snapshot.data and again.snapshot_hash == snapshot.snapshot_hash
    # The whole dump comes back exactly as the projections dumped it.
    decoded = decode_snapshot(snapshot)
    assert decoded == {name: p.dump() for name, p in store.projections.items()}


def test_open_refuses_snapshots_that_do_not_say_what_they_claim(store: EventStore) -> None:
    real = store.snapshot()
    header, body = real.data.split(b"\n", 1)
    parsed = orjson.loads(header)

    def with_header(change: Any) -> bytes:
        copy = orjson.loads(header)
        change(copy)
        return orjson.dumps(copy, option=orjson.OPT_SORT_KEYS) + b"\n" + body

    def set_entities(value: Any) -> Any:
        return lambda h: h["projections"]["channel"].__setitem__("entities", value)

    first = parsed["projections"]["channel"]["entities"][0]
    cases: list[tuple[StoredSnapshot, str]] = [
        (StoredSnapshot(real.offset, real.versions, real.data, b"\x00" * 32), "do not match"),
        (forged(real, b"not json\n"), "not JSON"),
        (forged(real, b'{"format": 1, "offset": 15, "projections": {}}'), "unknown snapshot"),
        (forged(real, b"[1, 2]\n"), "unknown snapshot format"),
        (forged(real, header), "no newline"),
        (forged(real, with_header(lambda h: h.__setitem__("offset", 3))), "describe offset 3"),
        (forged(real, with_header(lambda h: h.pop("projections"))), "no projections"),
        (forged(real, real.data, {**real.versions, "objective": 7}), "schema version 7"),
        (forged(real, with_header(set_entities({"x": 1}))), "entities must be a list"),
        (forged(real, with_header(set_entities([[first[0], 0, 10**9]]))), "bad entity entry"),
        (forged(real, with_header(set_entities([[first[0], -1, 2]]))), "bad entity entry"),
        (forged(real, with_header(set_entities([[7, 0, 2]]))), "bad entity entry"),
        (forged(real, with_header(set_entities([first, first]))), "listed twice"),
        (
            forged(
                real,
                with_header(lambda h: h["projections"]["channel"].__setitem__("data", [1])),
            ),
            "indexed data must be an object",
        ),
        (
            StoredSnapshot(
                real.offset,
                real.versions,
                bytearray(real.data),  # type: ignore[arg-type]
                real.snapshot_hash,
            ),
            "not bytes",
        ),
    ]
    for snapshot, match in cases:
        with pytest.raises(DecodeError, match=match):
            open_snapshot(snapshot)


def test_a_corrupt_entity_slice_is_refused_when_read_and_the_store_falls_back(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A slice that is not JSON (its hash recomputed, so only parsing can tell) fails the
    one entity that needs it, with a DecodeError, and reconstruction replays instead."""
    real = store.snapshot()
    header, body = real.data.split(b"\n", 1)
    start, length = orjson.loads(header)["projections"]["channel"]["entities"][0][1:]
    bad_body = body[:start] + b"{" * length + body[start + length :]
    bad = forged(real, header + b"\n" + bad_body)
    victim = orjson.loads(header)["projections"]["channel"]["entities"][0][0]
    view = open_snapshot(bad)
    with pytest.raises(DecodeError, match=f"state of channel {victim} is not JSON"):
        view.raw_entity("channel", victim)
    with pytest.raises(DecodeError, match="not JSON"):
        decode_snapshot(bad)
    backend = MemoryBackend()
    fresh = EventStore(backend)
    fresh.append_batch([record.event for record in store.read_range(0, real.offset)])
    backend.save_snapshot(bad)
    expected = StateReconstructor(fresh, use_snapshots=False).reconstruct("channel", victim)
    with caplog.at_level(logging.WARNING, logger="chanlog.snapshots"):
        assert fresh.reconstruct("channel", victim, at=real.offset) == expected
        reopened = EventStore(backend)
    assert reopened.state("channel", victim) == expected
    assert "ignoring snapshot at offset" in caplog.text


def test_view_refuses_unknown_projections_and_whole_reads_of_indexed_ones(
    store: EventStore,
) -> None:
    view = open_snapshot(store.snapshot())
    assert view.projection_names() == sorted(store.projections)
    assert view.is_indexed("channel") and view.entity_count("channel") == 3
    assert view.raw_entity("channel", "0x" + "ff" * 32) is None
    with pytest.raises(DecodeError, match="holds no projection 'nope'"):
        view.is_indexed("nope")


def test_reconstruction_parses_only_its_entity_and_only_once_per_snapshot() -> None:
    """100 other channels in the snapshot; reconstructing one at many offsets after it
    verifies the snapshot once and parses one entity state once."""
    store = EventStore()
    store.append_batch(interleaved(channels=101, turns=3))
    snapshot = store.snapshot()
    target = channel_id(42)
    store.append_batch(channel_events(channel_id(500), 5))
    manager = store.snapshots
    opened, loads = manager.opened_count, manager.state_loads
    parsed: list[str] = []
    original = SnapshotView.raw_entity

    def spy(self: Any, name: str, entity_id: str) -> Any:
        parsed.append(entity_id)
        return original(self, name, entity_id)

    SnapshotView.raw_entity = spy  # type: ignore[method-assign]
    try:
        cold = StateReconstructor(store, use_snapshots=False)
        for at in range(snapshot.offset, len(store) + 1):
            assert store.reconstruct("channel", target, at=at) == cold.reconstruct(
                "channel", target, at
            )
    finally:
        SnapshotView.raw_entity = original  # type: ignore[method-assign]
    assert parsed == [target]
    assert manager.opened_count - opened <= 1
    assert manager.state_loads - loads == 1


def test_state_cache_is_bounded_and_cached_states_are_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(manager_module, "_STATE_CACHE_SIZE", 2)
    monkeypatch.setattr(manager_module, "_VIEW_CACHE_SIZE", 1)
    store = EventStore()
    store.append_batch(interleaved(channels=4, turns=2))
    first = store.snapshot()
    store.append_batch(channel_events(channel_id(9), 2))
    second = store.snapshot()
    manager = store.snapshots
    ids = [channel_id(n + 1) for n in range(4)]
    for entity in ids + ids:
        state, offset = manager.entity_state(store.projection("channel"), entity, second.offset)
        assert offset == second.offset and state == store.state("channel", entity)
    assert len(manager._states) == 2
    assert manager.state_loads == 8  # a cache of two cannot hold four entities
    state, offset = manager.entity_state(store.projection("channel"), ids[0], first.offset)
    assert offset == first.offset and state == store.state("channel", ids[0])
    assert len(manager._views) == 1
    none, offset = manager.entity_state(store.projection("channel"), channel_id(9), first.offset)
    assert none is None and offset == first.offset  # the channel did not exist yet


def test_a_format_1_snapshot_is_ignored_and_the_log_replayed(store: EventStore) -> None:
    old = orjson.dumps(
        {
            "format": 1,
            "offset": len(store),
            "projections": {
                name: {"schema_version": p.schema_version, "data": {"states": {}, "index": {}}}
                for name, p in store.projections.items()
            },
        },
        option=orjson.OPT_SORT_KEYS,
    )
    backend = store.backend
    backend.save_snapshot(
        StoredSnapshot(
            len(store),
            {name: p.schema_version for name, p in store.projections.items()},
            old,
            keccak256(old),
        )
    )
    assert store.snapshots.latest_snapshot() is None
    reopened = EventStore(backend)
    for name, projection in store.projections.items():
        assert reopened.projection(name).dump() == projection.dump()


class TurnCounter:
    """A third-party projection that is not an EntityProjection: turns signed per channel,
    dumped in its own shape (stored whole in the snapshot)."""

    name = "turn-counter"
    schema_version = 3

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def stage(self) -> TurnCounter._Stage:
        return TurnCounter._Stage(self)

    class _Stage:
        def __init__(self, projection: TurnCounter) -> None:
            self.projection = projection
            self.pending: dict[str, int] = {}

        def apply(self, event: Event, offset: int) -> None:
            for entity in self.projection.entity_ids(event):
                before = self.pending.get(entity, self.projection.counts.get(entity))
                after = self.projection.fold(before, event, entity, offset)
                if after is not None:
                    self.pending[entity] = after

        def commit(self) -> None:
            self.projection.counts.update(self.pending)

    def get(self, entity_id: str) -> int | None:
        return self.counts.get(entity_id.lower())

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        return (event.channel_id.lower(),) if isinstance(event, StateSigned) else ()

    def fold(self, state: int | None, event: Event, entity_id: str, offset: int) -> int | None:
        return (state or 0) + 1 if isinstance(event, StateSigned) else state

    def dump(self) -> Any:
        return [[entity, count] for entity, count in sorted(self.counts.items())]

    def dump_state(self, state: int) -> Any:
        return state

    def load_state(self, data: Any) -> int:
        if type(data) is not int:
            raise DecodeError(f"turn-counter: not a count: {data!r}")
        return data

    def load(self, data: Any) -> None:
        self.counts = {entity: self.load_state(count) for entity, count in self._entries(data)}

    @staticmethod
    def _entries(data: Any) -> Iterable[tuple[str, Any]]:
        if not isinstance(data, list) or not all(
            isinstance(item, list) and len(item) == 2 for item in data
        ):
            raise DecodeError("turn-counter: expected [[id, count], ...]")
        return [(str(item[0]), item[1]) for item in data]

    def __len__(self) -> int:
        return len(self.counts)


class CounterPlugin:
    @hookimpl
    def chanlog_register_projections(self, register: Any) -> None:
        register("turn-counter", TurnCounter)


def test_a_projection_of_its_own_shape_is_stored_whole_and_restored() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(CounterPlugin(), name="counter")
    backend = MemoryBackend()
    projections = ["channel", "turn-counter"]
    with EventStore(backend, plugins=host, projections=projections) as store:
        store.append_batch(interleaved(channels=2, turns=3))
        snapshot = store.snapshot()
        store.append_batch(channel_events(channel_id(7), 2))
        expected = store.projection("turn-counter").dump()
        view = open_snapshot(snapshot)
        assert not view.is_indexed("turn-counter") and view.entity_count("turn-counter") == 0
        assert view.projection_data("turn-counter") == [[channel_id(1), 3], [channel_id(2), 3]]
        with pytest.raises(DecodeError, match="not indexed per entity"):
            view.raw_entity("turn-counter", channel_id(1))
        assert store.reconstruct("turn-counter", channel_id(1), at=len(store)) == 3
        assert store.reconstruct("turn-counter", channel_id(7), at=len(store)) == 2
        with pytest.raises(NotFound):
            store.reconstruct("turn-counter", channel_id(7), at=snapshot.offset)
    reopened = EventStore(backend, plugins=host, projections=projections)
    assert reopened.snapshots.opened_count == 1
    assert reopened.projection("turn-counter").dump() == expected


def test_a_projection_that_dumps_non_json_cannot_be_snapshotted() -> None:
    class Broken(TurnCounter):
        def dump(self) -> Any:
            return {"when": object()}

    with pytest.raises(DecodeError, match="dumped non-JSON"):
        encode_snapshot(0, {"broken": Broken()})

    class IntKeys(ChannelProjection):
        def dump(self) -> dict[str, Any]:
            return {"states": {1: {}}, "index": {}}

    with pytest.raises(DecodeError, match="projection 'channel' dumped non-JSON"):
        encode_snapshot(0, {"channel": IntKeys()})  # type: ignore[dict-item]


def test_the_workload_snapshot_reconstruction_agrees_everywhere() -> None:
    """A generated workload (every fold rule): from each of several snapshots, every
    entity at every offset after it equals the full fold."""
    workload = Workload(channels=3, turns=6, seed=11, challenge_probability=0.5)
    store = EventStore(snapshot_policy="every-n-events")
    events = workload.events()
    step = max(1, len(events) // 4)
    for start in range(0, len(events), step):
        store.append_batch(events[start : start + step])
        store.snapshot()
    cold = StateReconstructor(store, use_snapshots=False)
    entities = [("channel", plan.channel_id) for plan in workload.plans] + [
        ("objective", plan.fund_objective_id) for plan in workload.plans
    ]
    for at in range(0, len(store) + 1, 3):
        for kind, entity in entities:
            try:
                expected = cold.reconstruct(kind, entity, at)
            except NotFound:
                with pytest.raises(NotFound):
                    store.reconstruct(kind, entity, at)
                continue
            assert store.reconstruct(kind, entity, at) == expected


def test_a_large_snapshot_is_stored_compressed_and_reads_back_the_same() -> None:
    store = EventStore()
    store.append_batch(interleaved(channels=60, turns=6))
    snapshot = store.snapshot()
    assert snapshot.data.startswith(COMPRESSED)
    inflated = zlib.decompress(snapshot.data[len(COMPRESSED) :])
    assert len(inflated) >= COMPRESS_FROM > len(snapshot.data)
    assert snapshot.snapshot_hash == keccak256(snapshot.data)  # the stored bytes
    assert decode_snapshot(snapshot) == {name: p.dump() for name, p in store.projections.items()}
    assert store.verify() == len(store)
    # Damage the zlib stream but keep the hash matching: the open refuses it.
    broken = forged(snapshot, COMPRESSED + b"\x00" + snapshot.data[len(COMPRESSED) + 1 :])
    with pytest.raises(DecodeError, match="do not decompress"):
        open_snapshot(broken)


def test_a_small_snapshot_stays_plain_json(store: EventStore) -> None:
    snapshot = store.snapshot()
    assert len(snapshot.data) < COMPRESS_FROM
    assert snapshot.data.startswith(b"{")
