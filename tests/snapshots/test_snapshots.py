"""Snapshots: policies, restart from the newest compatible one, never trusting another
version, and the invariant snapshot + tail == full fold."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import ConfigError, EventStore, InvalidArgument, PluginError
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.events import SnapshotCreated
from chanlog.plugins import PluginHost, hookimpl
from chanlog.projections import ChannelProjection
from chanlog.reconstruct import StateReconstructor
from chanlog.records import StoredSnapshot
from chanlog.snapshots import EveryNEvents, Never, SnapshotPolicy, decode_snapshot
from chanlog.snapshots.policies import PlansSnapshots, RetainsSnapshots, retained
from chanlog.workload import Workload, WorkloadConfig

if TYPE_CHECKING:
    from conftest import CountingBackend


def states(store: EventStore) -> dict[str, Any]:
    return {name: p.dump() for name, p in store.projections.items()}


def test_policies_and_their_options() -> None:
    assert EveryNEvents().n == 1000
    assert EveryNEvents(n=3).should_snapshot(length=3, last_snapshot_offset=None)
    assert not EveryNEvents(n=3).should_snapshot(length=5, last_snapshot_offset=3)
    assert not Never().should_snapshot(length=10**9, last_snapshot_offset=None)
    assert isinstance(Never(), SnapshotPolicy)
    for bad in (0, -1, "5", True):
        with pytest.raises(ConfigError, match="n must be"):
            EveryNEvents(n=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no option 'every'"):
        EveryNEvents(every=5)
    with pytest.raises(ConfigError):
        Never(n=1)
    with pytest.raises(PluginError, match=r"named .sometimes.; installed: every-n-events, never"):
        EventStore(snapshot_policy="sometimes")
    with pytest.raises(InvalidArgument):
        EventStore(snapshot_policy=object())  # type: ignore[arg-type]
    assert isinstance(EventStore().snapshot_policy, Never)


def test_every_n_events_appends_snapshot_created_and_restart_replays_only_the_tail(
    counting_backend: CountingBackend,
) -> None:
    workload = Workload(channels=6, turns=8, seed=2)
    store = EventStore(counting_backend, snapshot_policy=EveryNEvents(n=50))
    for event in workload:
        store.append(event)
    markers = [r for r in store if isinstance(r.event, SnapshotCreated)]
    assert len(markers) == len(store) // 51 or len(markers) >= 2
    last = markers[-1].event
    assert isinstance(last, SnapshotCreated)
    snapshot = store.snapshots.latest_snapshot()
    assert snapshot is not None and snapshot.offset == last.snapshot_offset
    assert last.snapshot_hash == "0x" + snapshot.snapshot_hash.hex()
    assert last.channel_count == len(decode_snapshot(snapshot)["channel"]["states"])
    before = states(store)
    counting_backend.log_reads = 0
    reopened = EventStore(counting_backend)
    # The tail, and once more its first record: the snapshot's announcement (ADR 0067).
    assert counting_backend.log_reads == len(store) - snapshot.offset + 1
    assert states(reopened) == before
    assert workload.expectation().mismatches(reopened) == []


def test_a_snapshot_of_another_schema_version_is_ignored() -> None:
    workload = Workload(channels=3, turns=4, seed=4)
    backend = MemoryBackend()
    store = EventStore(backend)
    store.append_batch(workload.events())
    expected = states(store)
    real = store.snapshot()
    channel = workload.plans[0].channel_id
    # A snapshot from a "future" channel projection, at a later offset, with poisoned data.
    poisoned = EventStore(MemoryBackend())
    poisoned.projection("channel")._states = {}  # type: ignore[attr-defined]
    fake = StoredSnapshot(
        offset=len(store),
        versions={**real.versions, "channel": 2},
        data=real.data,
        snapshot_hash=real.snapshot_hash,
    )
    backend.save_snapshot(fake)
    assert store.snapshots.latest_snapshot() == real
    reopened = EventStore(backend)
    assert states(reopened) == expected
    assert reopened.reconstruct("channel", channel, at=len(store)) == store.state(
        "channel", channel
    )


def test_a_snapshot_whose_bytes_do_not_match_its_hash_is_ignored() -> None:
    workload = Workload(channels=2, turns=3, seed=6)
    backend = MemoryBackend()
    store = EventStore(backend)
    store.append_batch(workload.events())
    expected = states(store)
    real = store.snapshot()
    forged = real.data.replace(b'"completed"', b'"approved"')
    backend.save_snapshot(StoredSnapshot(real.offset, real.versions, forged, real.snapshot_hash))
    assert store.snapshots.latest_snapshot() is None
    assert states(EventStore(backend)) == expected


def test_a_newer_projection_version_uses_no_old_snapshot() -> None:
    class ChannelV2(ChannelProjection):
        schema_version = 2

    class V2Plugin:
        @hookimpl
        def chanlog_register_projections(self, register: Any) -> None:
            register("channel-v2", ChannelV2)

    host = PluginHost(load_entry_points=False)
    host.register(V2Plugin(), name="v2")
    backend = MemoryBackend()
    workload = Workload(channels=2, turns=3, seed=8)
    with EventStore(backend, plugins=host, projections=["channel"]) as store:
        store.append_batch(workload.events())
        store.snapshot()
    reopened = EventStore(backend, plugins=host, projections=["channel-v2"])
    assert reopened.snapshots.latest_snapshot() is None
    channel = workload.plans[1].channel_id
    assert reopened.state("channel-v2", channel) == store.state("channel", channel)


def test_snapshot_at_a_past_offset_and_bad_offsets() -> None:
    workload = Workload(channels=3, turns=3, seed=3)
    events = workload.events()
    store = EventStore()
    store.append_batch(events[:40])
    at_forty = store.snapshot()
    store.append_batch(events[40:])
    again = store.snapshot(40)
    assert again.snapshot_hash == at_forty.snapshot_hash  # same states, same bytes
    with pytest.raises(InvalidArgument, match="beyond"):
        store.snapshot(len(store) + 1)
    with pytest.raises(InvalidArgument):
        store.snapshot(-1)
    with pytest.raises(InvalidArgument):
        store.snapshots.latest_snapshot(-2)
    snapshot_count = sum(1 for r in store if isinstance(r.event, SnapshotCreated))
    # Re-taking the identical snapshot appends the identical snapshot-created: idempotent.
    assert snapshot_count == 1


def test_reconstruction_from_a_snapshot_reads_only_the_tail(counting_backend) -> None:  # type: ignore[no-untyped-def]
    workload = Workload(channels=1, turns=300, seed=1, messages=0, challenge_probability=0)
    store = EventStore(counting_backend, checkpoint_every=0)  # the snapshot alone
    store.append_batch(workload.events())
    channel = workload.plans[0].channel_id
    snapshot = store.snapshot(700)
    counting_backend.stream_reads = 0
    state = store.reconstruct("channel", channel, at=750)
    tail = sum(
        1 for r in store.read_range(700, 750) if getattr(r.event, "channel_id", None) == channel
    )
    assert counting_backend.stream_reads == tail <= 50
    cold = StateReconstructor(store, use_snapshots=False).reconstruct("channel", channel, at=750)
    assert state == cold
    assert snapshot.offset == 700


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    channels=st.integers(1, 4),
    turns=st.integers(0, 5),
    data=st.data(),
)
def test_snapshot_plus_tail_equals_full_fold_equals_fresh_replay(
    seed: int, channels: int, turns: int, data: st.DataObject
) -> None:
    workload = Workload(channels=channels, turns=turns, seed=seed, challenge_probability=0.5)
    events = workload.events()
    # Checkpoints every few events of an entity: reconstruction then also starts from them.
    every = data.draw(st.integers(0, 4), label="checkpoint_every")
    store = EventStore(checkpoint_every=every)
    store.append_batch(events)
    snap_at = data.draw(st.integers(0, len(store)), label="snapshot offset")
    store.snapshot(snap_at)
    length = len(store)
    at = data.draw(st.integers(0, length), label="offset")
    fresh = EventStore(store.backend)  # restart: snapshot + tail
    replayed = EventStore(checkpoint_every=every)  # a fresh store replaying the same log
    replayed.append_batch([r.event for r in store])
    assert states(fresh) == states(store) == states(replayed)
    cold = StateReconstructor(store, use_snapshots=False)
    for plan in workload.plans:
        for kind, entity in (
            ("channel", plan.channel_id),
            ("objective", plan.fund_objective_id),
            ("objective", plan.defund_objective_id),
        ):
            try:
                full = cold.reconstruct(kind, entity, at)
            except Exception as exc:  # NotFound before the entity exists
                with pytest.raises(type(exc)):
                    store.reconstruct(kind, entity, at)
                continue
            assert store.reconstruct(kind, entity, at) == full
            assert replayed.reconstruct(kind, entity, at) == full
            assert fresh.reconstruct(kind, entity, at) == full


def test_expectation_reports_differences() -> None:
    workload = Workload(channels=2, turns=2, seed=5, reject_probability=0)
    events = workload.events()
    store = EventStore()
    store.append_batch(events[: len(events) // 2])
    problems = workload.expectation().mismatches(store)
    assert problems and all(p.startswith(("objective", "channel")) for p in problems)
    assert any("missing" in p for p in problems) or any("status" in p for p in problems)


class _Asking:
    """every-n-events without PlansSnapshots: the store must ask it after every commit."""

    name = "asking"

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked = 0

    def should_snapshot(self, *, length: int, last_snapshot_offset: int | None) -> bool:
        self.asked += 1
        return length - (last_snapshot_offset or 0) >= self.n


class _Planning(_Asking):
    """The same decisions, with a plan: the store asks only once the plan is reached."""

    def next_snapshot_at(self, *, last_snapshot_offset: int | None) -> int:
        return (last_snapshot_offset or 0) + self.n


def _snapshot_offsets(policy: _Asking) -> list[int]:
    store = EventStore(snapshot_policy=policy)
    for event in Workload(channels=4, turns=10, seed=8):
        store.append(event)
    return [r.event.snapshot_offset for r in store if isinstance(r.event, SnapshotCreated)]


def test_a_planning_policy_snapshots_where_an_asked_one_does_and_is_asked_far_less() -> None:
    asking, planning = _Asking(n=25), _Planning(n=25)
    assert isinstance(planning, PlansSnapshots)
    assert not isinstance(asking, PlansSnapshots)
    taken = _snapshot_offsets(asking)
    assert len(taken) >= 3
    assert _snapshot_offsets(planning) == taken
    assert asking.asked > 100  # once per commit
    assert planning.asked <= 3 * len(taken) + 2  # at the planned points only


def test_the_built_in_policies_plan_what_they_decide() -> None:
    every = EveryNEvents(n=7)
    for last in (None, 0, 7, 30):
        due = every.next_snapshot_at(last_snapshot_offset=last)
        assert every.should_snapshot(length=due, last_snapshot_offset=last)
        assert not every.should_snapshot(length=due - 1, last_snapshot_offset=last)
    never: PlansSnapshots = Never()
    assert never.next_snapshot_at(last_snapshot_offset=5) is None
    store = EventStore()
    store.append_batch(list(Workload(channels=1, turns=3, seed=1)))
    assert not [r for r in store if isinstance(r.event, SnapshotCreated)]


def test_a_store_without_projections_never_asks_its_policy_again() -> None:
    policy = _Asking(n=1)
    store = EventStore(projections=[], snapshot_policy=policy)
    for event in Workload(channels=1, turns=5, seed=3):
        store.append(event)
    assert policy.asked == 0
    assert store.snapshots.latest_snapshot() is None


def test_retention_keeps_the_latest_and_about_one_per_doubling_of_age() -> None:
    spacing = 1000
    stored: list[int] = []
    for number in range(1, 600):
        stored = sorted(set(retained([*stored, number * (spacing + 1)], 2, spacing)))
        assert stored[-1] == number * (spacing + 1)  # the newest is always kept
        assert len(stored) <= 2 + number.bit_length() + 1
    assert len(stored) >= 6  # older ones are thinned, not all dropped


@given(
    numbers=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=60),
    keep=st.integers(min_value=0, max_value=5),
)
def test_thinning_never_wants_back_what_it_deleted(numbers: list[int], keep: int) -> None:
    """Pruning as snapshots come: a snapshot dropped once is never retained later, so
    deleting what a prune does not keep loses nothing a later prune would want."""
    offsets = sorted({number * 7 for number in numbers})
    alive: list[int] = []
    dropped: set[int] = set()
    for offset in offsets:
        candidates = [*alive, offset]
        kept = retained(candidates, keep, 7)
        assert kept <= set(candidates)
        everything = retained(sorted(set(candidates) | dropped), keep, 7)
        assert not (everything & dropped), "a later prune wants a deleted snapshot back"
        dropped |= set(candidates) - kept
        alive = sorted(kept)
    if keep == 0:
        assert alive == offsets


def test_every_n_events_keeps_what_retention_says(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep must be"):
        EveryNEvents(keep=-1)
    policy = EveryNEvents(n=20, keep=1, incremental=False)  # bases: test_incremental.py
    assert isinstance(policy, RetainsSnapshots)
    store = EventStore(SqliteBackend(tmp_path / "log.db"), snapshot_policy=policy)
    store.append_batch(list(Workload(WorkloadConfig(seed=5, channels=6, turns=12))))
    for event in Workload(WorkloadConfig(seed=6, channels=3, turns=10)):
        store.append(event)
    announced = [r.event.snapshot_offset for r in store if isinstance(r.event, SnapshotCreated)]
    kept = [offset for offset, _ in store.backend.snapshot_sizes()]  # type: ignore[attr-defined]
    assert len(announced) > 8
    assert kept == sorted(retained(kept, 1, 20))
    assert kept[-1] == announced[-1]
    assert len(kept) < len(announced)
    assert store.verify() == len(store)  # pruned snapshots are no damage
    length = len(store)
    store.close()
    reopened = EventStore(SqliteBackend(tmp_path / "log.db"), snapshot_policy=policy)
    assert len(reopened) == length
    assert reopened.prune_snapshots(keep=0) == []
    assert reopened.prune_snapshots() == []  # the policy's retention already applied
    reopened.close()


def test_a_policy_without_retention_keeps_every_snapshot() -> None:
    store = EventStore(snapshot_policy="never")
    store.append_batch(list(Workload(WorkloadConfig(seed=5, channels=2, turns=3))))
    for _ in range(3):
        store.snapshot()
        store.append_batch(list(Workload(WorkloadConfig(seed=len(store), channels=1, turns=1))))
    assert len(store.backend.snapshot_sizes()) == 3  # type: ignore[attr-defined]
    assert store.prune_snapshots() == []
    assert len(store.prune_snapshots(keep=1)) >= 1


@pytest.mark.parametrize("keep", [-1, -3, 1.5, True, "2"])
def test_prune_refuses_a_keep_that_is_not_a_count(keep: Any) -> None:
    """``keep`` is checked as the policy's option is: a negative one kept the newest and
    deleted the oldest (``-1`` deleted exactly the first snapshot), others raised TypeError."""
    store = EventStore(snapshot_policy=EveryNEvents(n=5, keep=0, incremental=False))
    events = list(Workload(WorkloadConfig(seed=1, channels=3, turns=5)))[:30]
    for start in range(0, len(events), 5):
        store.append_batch(events[start : start + 5])
    stored = store.backend.snapshot_sizes()  # type: ignore[attr-defined]
    assert len(stored) > 3
    with pytest.raises(InvalidArgument, match="keep must be an int >= 0"):
        store.prune_snapshots(keep)
    assert store.backend.snapshot_sizes() == stored  # type: ignore[attr-defined]
