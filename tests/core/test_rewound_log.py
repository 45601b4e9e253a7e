"""A log that no longer holds records a running store folded: a database that lost
acknowledged commits (a crash with ``durability = "normal"``, a failover to a replica that
was behind, a backup restored under a running node). The store notices at its next write
or refresh, says so, and folds its state again from the log, so that its state stays what
a replay of the log gives (ADR 0043)."""

from __future__ import annotations

import logging

import pytest

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.bus.read_model import ChannelReadModel
from chanlog.records import PositionMove
from chanlog.snapshots.policies import EveryNEvents
from chanlog.workload import Workload
from core.lost_records import Mirror, backup, restore

WORKLOAD = Workload(channels=4, turns=6, seed=21)
EVENTS = WORKLOAD.events()
CHANNELS = sorted(plan.channel_id for plan in WORKLOAD.plans)
KEPT = 40


def _states(store: chanlog.EventStore) -> list[object]:
    return [store.state("channel", channel) for channel in CHANNELS]


@pytest.mark.parametrize("noticed_by", ["refresh", "append"])
def test_a_store_folds_its_state_again_when_the_log_lost_records(
    noticed_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend) as store:
        delivered: list[int] = []
        store.subscribe(lambda record: delivered.append(record.offset))
        store.append_batch(EVENTS[:30])
        store.snapshot()  # folding again starts from it: it is in the backup
        for event in EVENTS[30:50]:  # a database loses whole commits: these are one each
            store.append(event)
        kept = backup(backend, KEPT)
        store.append_batch(EVENTS[50:60])
        store.snapshot()  # lost with the records after the backup
        folded = len(store)
        restore(backend, kept)
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            if noticed_by == "refresh":
                assert store.refresh() == KEPT
            else:
                # The first event the log lost (the backup holds 39 events and a snapshot's
                # record): judged against the log as it is, it takes the next offset.
                assert store.append(EVENTS[39]) == KEPT
        [said] = [r.getMessage() for r in caplog.records if r.name == "chanlog.store"]
        assert f"the log holds {KEPT} records but this store had folded {folded}" in said
        assert f"records {KEPT} to {folded - 1} are no longer in it" in said
        assert f"handed the records from offset {KEPT} on again" in said
        assert len(store) == KEPT + (noticed_by == "append")
        with chanlog.EventStore(backend) as replayed:
            assert _states(store) == _states(replayed)
        for event in EVENTS:  # what was lost, from its sources again (the rest is known)
            store.append(event)
        assert delivered == list(range(folded)) + list(range(KEPT, len(store)))
        assert store.verify() == len(store)
        with chanlog.EventStore(backend) as replayed:
            assert _states(store) == _states(replayed)


def test_a_store_without_projections_goes_on_from_the_shorter_log() -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[:60])
        restore(backend, backup(backend, KEPT))
        assert store.append(EVENTS[KEPT]) == KEPT
        assert store.verify() == KEPT + 1


def test_incremental_snapshots_after_the_loss_stay_readable() -> None:
    """The last snapshot the store took was lost with the records: the next incremental
    ones are based on what the log still holds, and every snapshot reads back as what a
    replay gives."""
    backend = MemoryBackend()
    policy = EveryNEvents(n=8, incremental=True)
    with chanlog.EventStore(backend, snapshot_policy=policy) as store:
        store.append_batch(EVENTS[:30])
        for event in EVENTS[30:60]:
            store.append(event)
        kept = 36
        restore(backend, backup(backend, kept))
        assert store.refresh() == kept
        for event in EVENTS:
            store.append(event)
        offsets = [offset for offset, _size in backend.snapshot_sizes()]
        assert [o for o in offsets if o > kept]  # taken after the loss
        assert store.verify() == len(store)  # snapshots included
        for channel in CHANNELS:
            for at in offsets:
                with chanlog.EventStore(MemoryBackend()) as replay:
                    replay.append_batch([r.event for r in store.read_range(0, at)])
                    expected = _state_or_none(replay, channel)
                assert _state_at(store, channel, at) == expected


def _state_or_none(store: chanlog.EventStore, channel: str) -> object:
    try:
        return store.state("channel", channel)
    except chanlog.NotFound:
        return None


def _state_at(store: chanlog.EventStore, channel: str, at: int) -> object:
    try:
        return store.reconstruct_channel(channel, at)
    except chanlog.NotFound:
        return None


def test_records_lost_before_they_were_delivered_are_never_delivered() -> None:
    """A subscriber busy with the first record while the rest wait in the queue, and the
    log loses most of them meanwhile: it is handed the kept ones, then those that take the
    lost offsets, each offset once."""
    import threading

    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        delivered: list[tuple[int, str]] = []
        busy, gate = threading.Event(), threading.Event()

        def slow_on_the_first(record: chanlog.RecordedEvent) -> None:
            if record.offset == 0:
                busy.set()
                assert gate.wait(30)
            delivered.append((record.offset, record.event_id))

        store.subscribe(slow_on_the_first)
        first = threading.Thread(target=store.append, args=(EVENTS[0],))
        first.start()
        assert busy.wait(30)
        store.append_batch(EVENTS[1:30])  # committed; queued behind the busy subscriber
        restore(backend, backup(backend, 10))
        assert store.refresh() == 10
        gate.set()
        first.join(30)
        store.append_batch(EVENTS[40:60])  # other events take the lost offsets
        log = [(r.offset, r.event_id) for r in store]
        assert [event_id for _offset, event_id in log] == [
            e.event_id for e in EVENTS[:10] + EVENTS[40:60]
        ]
        assert delivered == log  # the kept, then the new: never a lost one


def _consumer_at(backend: MemoryBackend, name: str, holder: str, position: int) -> None:
    backend.ensure_consumer(name, 0, ["chanlog.>"])
    backend.acquire_lease(name, holder, 30)
    backend.move_consumer(PositionMove(name, holder, position, handled=position))


def test_a_runner_goes_on_from_the_stored_position_or_refuses_for_a_handler_that_keeps_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[:30])
        seen: list[int] = []
        plain = store.bus.consumer("plain", lambda record: seen.append(record.offset))
        mirror = Mirror()
        outside = store.bus.consumer("outside", mirror)
        assert plain.drain() == outside.drain() == 30
        restore(backend, backup(backend, 10))
        for runner in (plain, outside):  # their rows as the backup holds them
            _consumer_at(backend, runner.name, runner.holder, 10)
        store.refresh()
        with caplog.at_level(logging.ERROR, logger="chanlog.bus"):
            assert plain.run_once() == 0
        assert "the log holds 10 records but this runner had passed 30" in caplog.text
        store.append_batch(EVENTS[40:45])  # other records take the lost offsets
        plain.drain()
        assert seen == list(range(30)) + list(range(10, 15))
        with pytest.raises(chanlog.IntegrityError, match="rebuild what it feeds") as refused:
            outside.run_once()
        assert refused.value.offset == 10
        assert "chanlog consumers reset outside --to 10" in str(refused.value)
        assert mirror.applied == list(range(30))  # nothing more applied
        outside.close()
        plain.close()
        assert store.bus.consumers.state("outside").position == 10  # not moved past the end


def test_a_read_model_started_after_the_loss_refuses_instead_of_skipping(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """The node restarted after the loss: the new runner's handler already applied records
    past the log's end. Resuming from its offset would skip the records that take the lost
    offsets, so the runner refuses at start, naming where to rebuild from."""
    backend = MemoryBackend()
    path = f"{tmp_path}/read-model.sqlite"
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[:30])
        model = ChannelReadModel(path=path)
        with store.bus.consumer("latest", model) as runner:
            assert runner.drain() == 30
        kept = backup(backend, 10)
    restore(backend, kept)
    _consumer_at(backend, "latest", "an earlier run", 10)
    backend.release_lease("latest", "an earlier run")
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[40:45])  # other records take offsets 10 to 14
        runner = store.bus.consumer("latest", ChannelReadModel(path=path))
        with pytest.raises(chanlog.IntegrityError, match="rebuild what it feeds") as refused:
            runner.start()
        assert refused.value.offset == 10
        assert "chanlog consumers reset latest --to 10" in str(refused.value)
        assert store.bus.consumers.state("latest").position == 10  # not moved past the end
        assert not runner.started
        assert "its handler had reached offset 30" in str(refused.value)
        state = backend.consumer_state("latest")
        assert state is not None and state.lease_holder is None  # given up, not held
        runner.close()


def test_now_after_the_loss_is_the_state_folded_again() -> None:
    """``reconstruct`` without an offset answers from the projections folded again, not from
    those it used before the loss (it remembers what each kind resolves to)."""
    backend = MemoryBackend()
    with chanlog.EventStore(backend) as store:
        store.append_batch(EVENTS[:30])
        store.snapshot()
        for event in EVENTS[30:50]:
            store.append(event)
        kept = backup(backend, KEPT)
        store.append_batch(EVENTS[50:60])
        before = [store.reconstruct("channel", channel) for channel in CHANNELS]
        restore(backend, kept)
        assert store.refresh() == KEPT
        with chanlog.EventStore(backend) as replayed:
            now = [store.reconstruct("channel", channel) for channel in CHANNELS]
            assert now == _states(replayed) == _states(store)
            assert now != before
