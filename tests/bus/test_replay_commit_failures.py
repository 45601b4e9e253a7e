"""A replay of a parked record whose commit failed: the move that records it (the record
unparked, or parked again with its new error) does not advance the position, so the stored
position cannot say whether it landed (ADR 0042). The parked row says it: a record still
marked for replay is replayed again, one that is not was settled, so nothing is counted
twice and a record an operator dropped meanwhile is not parked again (ADR 0059). Found by
the model of ``test_consumer_model.py``; the plain position commits fail through its
:class:`~bus.consumer_model.Faults` (FlakyBackend fails only the write transactions)."""

from __future__ import annotations

import pytest

import chanlog
from bus.conftest import Recorder
from bus.consumer_model import Faults, Stage
from chanlog.bus.runner import ConsumerRunner
from chanlog.errors import StorageError
from chanlog.testing import FlakyBackend
from chanlog.testing.events import sample_events

SETTINGS = {"max_deliver": 1, "backoff": [0.0], "lease_ttl": 600.0}


@pytest.fixture
def node() -> tuple[chanlog.EventStore, Faults]:
    backend = FlakyBackend()
    faults = Faults(backend)
    store = chanlog.EventStore(backend, projections=[], snapshot_policy="never")
    store.append_batch(sample_events(3))
    return store, faults


def _parked_and_replayed(store: chanlog.EventStore, recorder: Recorder) -> ConsumerRunner:
    runner = store.bus.consumer("c", recorder, **SETTINGS)
    runner.run_once()
    assert [p.offset for p in store.bus.consumers.parked("c")] == [1]
    assert store.bus.consumers.replay("c") == 1
    return runner


def test_a_dropped_record_is_not_parked_again_by_a_replay_whose_commit_landed(
    node: tuple[chanlog.EventStore, Faults],
) -> None:
    store, faults = node
    runner = _parked_and_replayed(store, Recorder(fail_on={1}))
    faults.arm_moves(1, "acknowledgement")  # the replay fails again; its park lands, "failed"
    with pytest.raises(StorageError):
        runner.run_once()
    [parked] = store.bus.consumers.parked("c")
    assert (parked.attempts, parked.replay) == (2, False)
    assert store.bus.consumers.drop("c") == 1  # the operator gives up on it
    runner.run_once()
    runner.close()
    assert store.bus.consumers.parked("c") == []
    state = store.bus.consumers.state("c")
    assert (state.parked, state.last_error) == (0, None)


@pytest.mark.parametrize("stage", ["commit", "acknowledgement"])
def test_a_replay_whose_commit_failed_is_counted_once(
    node: tuple[chanlog.EventStore, Faults], stage: Stage
) -> None:
    store, faults = node
    recorder = Recorder(fail_on={1}, fail_times=1)  # the replay succeeds
    runner = _parked_and_replayed(store, recorder)
    faults.arm_moves(1, stage)
    with pytest.raises(StorageError):
        runner.run_once()
    runner.run_once()
    runner.close()
    # Refused: replayed again (at least once); landed: not replayed again.
    assert recorder.offsets == [0, 2, 1, 1] if stage == "commit" else [0, 2, 1]
    state = store.bus.consumers.state("c")
    assert (state.handled, state.parked, state.last_error) == (3, 0, None)
