"""A consumer reset below a record it parked (to rebuild what it feeds) is handed that record
again in order: handled now, it leaves the parked list with the position, so neither
``chanlog consumers`` nor a later replay takes it for parked; failing again, it stays."""

from __future__ import annotations

import chanlog
from bus.conftest import Recorder
from chanlog.testing import sample_events

FAST = {"backoff": [0.0], "max_deliver": 1}


def _parked(store: chanlog.EventStore) -> list[int]:
    return [parked.offset for parked in store.bus.consumers.parked("c")]


def _pass(store: chanlog.EventStore, handler: Recorder) -> None:
    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()


def test_a_parked_record_handled_after_a_reset_is_no_longer_parked() -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(8))
    first = Recorder(fail_on={3, 5})
    _pass(store, first)
    assert (first.offsets, _parked(store)) == ([0, 1, 2, 4, 6, 7], [3, 5])

    store.bus.consumers.reset("c", 4)  # below 5, above 3
    again = Recorder(fail_on={6})  # 5 goes through now; 6 fails this time
    _pass(store, again)
    assert again.offsets == [4, 5, 7]
    assert _parked(store) == [3, 6]  # 3 was not handed over again: still parked
    assert store.bus.consumers.info("c").state.parked == 2

    store.bus.consumers.replay("c")
    replayed = Recorder()
    _pass(store, replayed)
    assert replayed.offsets == [3, 6]  # 5 once only
    assert _parked(store) == []


def test_an_appending_handler_after_a_reset_unparks_with_its_appends() -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(6))
    events = iter(sample_events(10, start=1000))
    broken = {"on": True}

    def handler(record: chanlog.RecordedEvent) -> list[chanlog.Event] | None:
        if record.offset != 3:
            return None
        if broken["on"]:
            raise RuntimeError("downstream refused")
        return [next(events)]  # committed with the position and the unparking

    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()
    assert _parked(store) == [3]
    broken["on"] = False
    store.bus.consumers.reset("c", 0)
    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()
    assert _parked(store) == []
    assert len(store) == 7  # one append, once


def test_a_replay_asked_with_a_reset_below_hands_each_record_once() -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(8))
    _pass(store, Recorder(fail_on={3, 5}))
    store.bus.consumers.replay("c")  # both, and a reset below 5 only
    store.bus.consumers.reset("c", 4)
    again = Recorder()
    _pass(store, again)
    assert again.offsets == [3, 4, 5, 6, 7]  # 3 replayed; 5 in order, not a second time
    assert _parked(store) == []
