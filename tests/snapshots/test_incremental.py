"""Incremental snapshots (ADR 0036): only what changed since the last snapshot is written,
the rest is read through it, and nothing about reconstruction changes."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import ConfigError, DecodeError, EventStore
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.events import SnapshotCreated
from chanlog.hashing import keccak256
from chanlog.projections.base import Projection
from chanlog.reconstruct import StateReconstructor
from chanlog.records import StoredSnapshot
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import (
    COMPRESSED,
    INCREMENTAL,
    DumpedProjection,
    base_reference,
    build_snapshot,
    dump_projections,
)
from chanlog.snapshots.incremental import MAX_CHAIN, encode_incremental
from chanlog.snapshots.policies import IncrementalSnapshots
from chanlog.snapshots.view import open_snapshot
from chanlog.workload import Workload


def states(store: EventStore) -> dict[str, Any]:
    return {name: p.dump() for name, p in store.projections.items()}


def stored(store: EventStore) -> list[StoredSnapshot]:
    backend: Any = store.backend
    found = []
    for offset, _size in backend.snapshot_sizes():
        snapshot = backend.latest_snapshot(offset)
        assert snapshot is not None and snapshot.offset == offset
        found.append(snapshot)
    return found


def idle_node(backend: Any = None, **policy: Any) -> tuple[EventStore, Workload]:
    """A store with 20 channels that then go quiet, and the workload of two busy ones."""
    store = EventStore(backend, snapshot_policy=EveryNEvents(n=10**9, **policy))
    store.append_batch(Workload(channels=20, turns=3, seed=11).events())
    return store, Workload(channels=2, turns=6, seed=12)


def test_a_node_whose_channels_are_idle_writes_only_what_changed(tmp_path: Path) -> None:
    store, busy = idle_node(SqliteBackend(tmp_path / "log.db"))
    first = store.snapshot()
    events = busy.events()
    store.append_batch(events[: len(events) // 2])
    second = store.snapshot()
    store.append_batch(events[len(events) // 2 :])
    third = store.snapshot()
    assert not first.data.startswith(INCREMENTAL)
    assert base_reference(second) == (first.offset, first.snapshot_hash)
    assert base_reference(third) == (second.offset, second.snapshot_hash)
    assert first.data.startswith(COMPRESSED) and not third.data.startswith(COMPRESSED, 77)
    assert len(third.data) * 4 < len(zlib.decompress(first.data[len(COMPRESSED) :]))
    # A restart reads the chain and gets exactly the states the store has.
    reopened = EventStore(SqliteBackend(tmp_path / "log.db"))
    assert reopened.snapshots.latest_snapshot() == third
    assert states(reopened) == states(store)
    # Reconstruction reads an idle entity through the chain, a busy one from the newest.
    cold = StateReconstructor(store, use_snapshots=False)
    idle = Workload(channels=20, turns=3, seed=11).plans[4].channel_id
    for channel in (idle, busy.plans[0].channel_id):
        assert reopened.reconstruct("channel", channel) == cold.reconstruct("channel", channel)
    assert store.verify() == len(store)


def test_the_policy_says_whether_snapshots_are_incremental() -> None:
    assert isinstance(EveryNEvents(), IncrementalSnapshots) and EveryNEvents().incremental
    with pytest.raises(ConfigError, match="incremental must be true or false") as caught:
        EveryNEvents(incremental="yes")  # type: ignore[arg-type]
    assert caught.value.key == "incremental"
    store, busy = idle_node(incremental=False)
    store.snapshot()
    store.append_batch(busy.events())
    assert not store.snapshot().data.startswith(INCREMENTAL)
    # The default policy ("never") takes whole snapshots when asked.
    plain = EventStore()
    plain.append_batch(Workload(channels=3, turns=2, seed=1).events())
    plain.snapshot()
    plain.append_batch(Workload(channels=1, turns=2, seed=2).events())
    assert not plain.snapshot().data.startswith(INCREMENTAL)


def test_chains_are_bounded_in_length_and_in_size() -> None:
    store, _busy = idle_node()
    taken = [store.snapshot()]
    for seed in range(MAX_CHAIN + 2):
        store.append_batch(Workload(channels=1, turns=1, seed=100 + seed).events())
        taken.append(store.snapshot())
    kinds = [snapshot.data.startswith(INCREMENTAL) for snapshot in taken]
    assert kinds[: MAX_CHAIN + 1] == [False] + [True] * MAX_CHAIN
    assert kinds[MAX_CHAIN + 1] is False  # a whole one after MAX_CHAIN incremental ones
    assert kinds[MAX_CHAIN + 2] is True
    # When most entities change, the next one is whole: a chain never costs more than half
    # a whole snapshot on top of its whole one.
    store.append_batch(Workload(channels=40, turns=2, seed=300).events())
    assert not store.snapshot().data.startswith(INCREMENTAL)


def test_pruning_keeps_every_snapshot_a_kept_one_is_taken_on(tmp_path: Path) -> None:
    store, _busy = idle_node(SqliteBackend(tmp_path / "log.db"), keep=1)
    for seed in range(5):
        store.snapshot()
        store.append_batch(Workload(channels=1, turns=1, seed=200 + seed).events())
    latest = store.snapshot()
    chain = {snapshot.offset for snapshot in stored(store)}
    offset: int | None = latest.offset
    needed = set()
    while offset is not None:
        needed.add(offset)
        snapshot = store.backend.latest_snapshot(offset)
        assert snapshot is not None
        reference = base_reference(snapshot)
        offset = None if reference is None else reference[0]
    assert needed <= chain and len(needed) == 6
    assert store.prune_snapshots(keep=1) == []  # the whole chain is needed
    reopened = EventStore(SqliteBackend(tmp_path / "log.db"))
    assert reopened.snapshots.latest_snapshot() == latest
    assert states(reopened) == states(store)


def test_a_snapshot_whose_base_is_gone_is_skipped_and_the_next_one_is_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, busy = idle_node(MemoryBackend())
    first = store.snapshot()
    store.append_batch(busy.events())
    second = store.snapshot()
    assert base_reference(second) == (first.offset, first.snapshot_hash)
    store.backend.delete_snapshots([first.offset])  # type: ignore[attr-defined]
    fresh = EventStore(store.backend)
    with caplog.at_level(logging.WARNING, logger="chanlog.snapshots"):
        assert fresh.snapshots.latest_snapshot() is None
    assert "no longer stored as it was" in caplog.text
    assert states(fresh) == states(store)  # replayed from the start
    store.append_batch(Workload(channels=1, turns=1, seed=9).events())
    assert not store.snapshot().data.startswith(INCREMENTAL)


def test_a_base_replaced_by_another_snapshot_leaves_its_followers_unread() -> None:
    store, busy = idle_node(MemoryBackend())
    first = store.snapshot()
    store.append_batch(busy.events())
    second = store.snapshot()
    forged = build_snapshot(first.offset, dump_projections(first.offset, {}))
    store.backend.save_snapshot(forged)
    fresh = EventStore(store.backend)
    assert fresh.snapshots.latest_snapshot() is None
    assert states(fresh) == states(store)
    with pytest.raises(DecodeError, match="was not given"):
        open_snapshot(second)
    with pytest.raises(DecodeError, match="given the one at offset"):
        open_snapshot(second, open_snapshot(forged))


def test_taking_again_a_snapshot_that_is_stored_keeps_its_bytes() -> None:
    store, busy = idle_node()
    store.snapshot()
    store.append_batch(busy.events())
    second = store.snapshot()
    assert second.data.startswith(INCREMENTAL)
    # Its offset is behind the end now (its announcement follows it): taken again, it is
    # the stored one, as it is, not a whole one that would strand a snapshot taken on it.
    assert store.snapshot(second.offset) == second
    announced = [r for r in store if isinstance(r.event, SnapshotCreated)]
    assert len(announced) == 2  # taking it again appends nothing


class _Ledger:
    """A projection stored per entity whose entities can go away."""

    name = "ledger"
    schema_version = 1

    def __init__(self, balances: dict[str, int]) -> None:
        self.balances = balances

    def dump(self) -> dict[str, Any]:
        return {
            "states": dict(self.balances),
            "total": sum(self.balances.values()),
            "owners": {entity: f"owner-{balance}" for entity, balance in self.balances.items()},
        }

    def dump_state(self, state: Any) -> Any:
        return state

    def load_state(self, data: Any) -> Any:
        return data


def test_entities_that_are_gone_are_gone_through_the_chain() -> None:
    idle = {f"x{n}": 0 for n in range(20)}
    # _Ledger has only what encoding reads of a projection: cast, not a full Projection
    before = cast(Projection, _Ledger({"a": 1, "b": 2, "c": 3, **idle}))
    first, chain = encode_incremental(5, {"ledger": before}, None)
    ledger = _Ledger({"a": 1, "c": 4, "d": 5, **idle})
    second, _ = encode_incremental(9, {"ledger": cast(Projection, ledger)}, chain)
    assert base_reference(second) == (5, first.snapshot_hash)
    view = open_snapshot(second, open_snapshot(first))
    assert view.raw_entity("ledger", "a") == 1  # read through the base
    assert view.raw_entity("ledger", "b") is None  # gone
    assert view.raw_entity("ledger", "c") == 4
    assert view.raw_entity("ledger", "zz") is None
    assert view.entity_count("ledger") == 23
    assert view.projection_data("ledger") == ledger.dump()
    # The index in its data is written as what changed: "c" and "d" set, "b" removed.
    header = orjson.loads(second.data.split(b"\n")[1])
    section = header["projections"]["ledger"]
    assert section["patched"] == {
        "owners": {"set": {"c": "owner-4", "d": "owner-5"}, "unset": ["b"]}
    }
    assert section["data"] == {"total": ledger.dump()["total"]}


def _patched_snapshot(patched: Any, base: bool) -> tuple[StoredSnapshot, Any]:
    whole = build_snapshot(1, [DumpedProjection("p", 1, {"index": {"a": 1}}, [])])
    crafted = build_snapshot(
        2,
        [DumpedProjection("p", 1, {}, [], patched=patched)],
        (1, whole.snapshot_hash) if base else None,
    )
    return crafted, open_snapshot(whole)


@pytest.mark.parametrize(
    ("patched", "base", "message"),
    [
        ({"index": {"set": {}, "unset": [1]}}, True, "bad patch of 'index'"),
        ({"index": {"set": []}}, True, "bad patch of 'index'"),
        ({"index": {"set": {}, "unset": []}}, False, "in an incremental snapshot only"),
        ({"other": {"set": {"b": 2}, "unset": []}}, True, "which its base does not hold"),
    ],
)
def test_a_malformed_patch_is_refused(patched: Any, base: bool, message: str) -> None:
    crafted, whole = _patched_snapshot(patched, base)
    with pytest.raises(DecodeError, match=message):
        open_snapshot(crafted, whole if base else None).projection_data("p")


def test_a_patch_sets_and_removes_entries_of_the_base() -> None:
    crafted, whole = _patched_snapshot({"index": {"set": {"b": 2}, "unset": ["a"]}}, True)
    assert open_snapshot(crafted, whole).data_of("p") == {"index": {"b": 2}}


@pytest.mark.parametrize(
    "first_line",
    [b"base 5\n", b"base x 0x" + b"00" * 32 + b"\n", b"base 5 0x" + b"zz" * 32 + b"\n"],
)
def test_a_malformed_base_reference_is_refused(first_line: bytes) -> None:
    data = first_line + b'{"format":2}\n'
    snapshot = StoredSnapshot(9, {}, data, keccak256(data))
    with pytest.raises(DecodeError, match="malformed base reference"):
        open_snapshot(snapshot)
    later = StoredSnapshot(3, {}, b"base 5 0x" + b"00" * 32 + b"\n", b"")
    with pytest.raises(DecodeError, match="earlier snapshot"):
        base_reference(later)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    channels=st.integers(2, 6),
    turns=st.integers(1, 6),
    every=st.integers(4, 30),
    keep=st.integers(0, 3),
    data=st.data(),
)
def test_with_incremental_snapshots_reconstruction_equals_a_full_fold(
    seed: int, channels: int, turns: int, every: int, keep: int, data: st.DataObject
) -> None:
    """The invariant of DESIGN section 5 with chains of incremental snapshots, pruned as the
    policy says: a restart and reconstruction at any offset equal a fold from the start."""
    workload = Workload(channels=channels, turns=turns, seed=seed, challenge_probability=0.3)
    policy = EveryNEvents(n=every, keep=keep)
    store = EventStore(MemoryBackend(), snapshot_policy=policy, checkpoint_every=0)
    for batch in workload.batches(data.draw(st.integers(1, 7), label="batch")):
        store.append_batch(batch)
    snapshots = stored(store)
    for snapshot in snapshots:  # every stored snapshot is readable: no base was pruned
        store.snapshots.open(snapshot)
    fresh = EventStore(store.backend, checkpoint_every=0)
    assert states(fresh) == states(store)
    cold = StateReconstructor(store, use_snapshots=False)
    for _ in range(3):
        at = data.draw(st.integers(0, len(store)), label="offset")
        for plan in workload.plans:
            try:
                full = cold.reconstruct("channel", plan.channel_id, at)
            except Exception as exc:  # NotFound before the channel exists
                with pytest.raises(type(exc)):
                    fresh.reconstruct("channel", plan.channel_id, at)
                continue
            assert fresh.reconstruct("channel", plan.channel_id, at) == full
    assert store.verify() == len(store)


def test_a_copied_log_rebuilds_its_incremental_snapshots() -> None:
    from chanlog.copying import LogCopy, export_line, parse_export_line

    source = EventStore(snapshot_policy=EveryNEvents(n=60, keep=0))
    source.append_batch(Workload(channels=12, turns=2, seed=21).events())
    for seed in range(4):
        for event in Workload(channels=1, turns=2, seed=40 + seed).events():
            source.append(event)
    snapshots = stored(source)
    assert any(snapshot.data.startswith(INCREMENTAL) for snapshot in snapshots)
    types = source.plugins.event_types
    lines = [
        parse_export_line(orjson.loads(orjson.dumps(export_line(r))), types, f"line {n}")
        for n, r in enumerate(source.read_from(0), start=1)
    ]
    copy = EventStore(snapshot_policy="never")
    copier = LogCopy(copy)
    copier.add(lines)
    assert copier.snapshots == len(snapshots)
    assert stored(copy) == snapshots
    assert copy.verify() == len(source)


def test_a_restarted_store_goes_on_with_the_chain_as_if_it_had_never_stopped(
    tmp_path: Path,
) -> None:
    busy = Workload(channels=3, turns=4, seed=12).events()
    steps = [busy[: len(busy) // 3], busy[len(busy) // 3 : 2 * len(busy) // 3]]
    straight, _ = idle_node(SqliteBackend(tmp_path / "straight.db"))
    straight.snapshot()
    for step in steps:
        straight.append_batch(step)
        straight.snapshot()
    restarted, _ = idle_node(SqliteBackend(tmp_path / "restarted.db"))
    restarted.snapshot()
    restarted.close()
    for step in steps:
        reopened = EventStore(
            SqliteBackend(tmp_path / "restarted.db"), snapshot_policy=EveryNEvents(n=10**9)
        )
        reopened.append_batch(step)
        reopened.snapshot()
        reopened.close()
    again = EventStore(SqliteBackend(tmp_path / "restarted.db"))
    assert stored(again) == stored(straight)
    assert [base_reference(s) is not None for s in stored(again)] == [False, True, True]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_damaged_incremental_header_is_refused_with_a_decode_error(
    data: st.DataObject,
) -> None:
    """Whatever a header of an incremental snapshot says (re-hashed, so the hash passes),
    reading it raises DecodeError or answers; never another exception."""
    idle = {f"x{n}": 0 for n in range(20)}
    first, chain = encode_incremental(5, {"ledger": _Ledger({"a": 1, **idle})}, None)  # type: ignore[dict-item]
    second, _ = encode_incremental(9, {"ledger": _Ledger({"b": 2, **idle})}, chain)  # type: ignore[dict-item]
    reference, header, body = second.data.split(b"\n", 2)
    parsed = orjson.loads(header)
    section = parsed["projections"]["ledger"]
    key = data.draw(st.sampled_from(["data", "entities", "removed", "patched", "extra"]))
    near_valid = st.dictionaries(  # patches of the base's data, their parts damaged
        st.sampled_from(["owners", "total", "other"]),
        st.fixed_dictionaries({"set": _JSON, "unset": st.lists(_JSON, max_size=2) | _JSON}),
        min_size=1,
        max_size=2,
    )
    section[key] = data.draw(near_valid if key == "patched" else _JSON, label="value")
    damaged = reference + b"\n" + orjson.dumps(parsed) + b"\n" + body
    snapshot = StoredSnapshot(9, second.versions, damaged, keccak256(damaged))
    try:
        view = open_snapshot(snapshot, open_snapshot(first))
        view.projection_data("ledger")
        view.data_of("ledger")
        view.raw_entity("ledger", "b")
        view.entity_count("ledger")
    except DecodeError:
        pass


def test_a_projection_whose_data_is_not_json_is_refused_clearly() -> None:
    class Broken(_Ledger):
        def dump(self) -> dict[str, Any]:
            return {**super().dump(), "owners": {"a": object()}}

    with pytest.raises(DecodeError, match="dumped non-JSON"):
        encode_incremental(3, {"ledger": Broken({"a": 1})}, None)  # type: ignore[dict-item]
