"""The channel read model keeps its own position, so a record below it is one it applied,
except a record it failed on and that was parked: replayed, that record is handed to its
``replay`` (ReplaysBelowPosition), applied once, and the row's state is the latest record's
whatever the order. A reset the read model's own position undoes is said in a warning."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import chanlog
from chanlog.bus.read_model import ChannelReadModel
from chanlog.events import StateSupportedUpdated
from chanlog.records import RecordedEvent
from chanlog.workload import Workload


def _updates(records: list[RecordedEvent], channel: str) -> list[RecordedEvent]:
    return [
        record
        for record in records
        if isinstance(record.event, StateSupportedUpdated)
        and record.event.channel_id.lower() == channel
    ]


@pytest.mark.parametrize("which", ["first", "last"])
def test_a_parked_record_replayed_is_applied_once(tmp_path: Path, which: str) -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(Workload(channels=2, turns=4, seed=1).events())
    records = list(store)
    first = next(record for record in records if isinstance(record.event, StateSupportedUpdated))
    channel = first.event.channel_id.lower()  # type: ignore[attr-defined]
    updates = _updates(records, channel)
    target = updates[0] if which == "first" else updates[-1]
    path = tmp_path / "channels.sqlite"
    model = ChannelReadModel(path=path)
    model._db.execute("PRAGMA busy_timeout = 20")  # the test's lock is felt at once
    runner = store.bus.consumer("latest", model, max_deliver=1, backoff=[0.0])
    runner.start()
    runner.run_once(limit=target.offset)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the read model's file busy: the record fails
    runner.run_once(limit=1)
    locker.execute("ROLLBACK")
    assert [parked.offset for parked in store.bus.consumers.parked("latest")] == [target.offset]
    runner.drain()
    row = model.latest(channel)
    assert row is not None and row.updates == len(updates) - 1

    assert store.bus.consumers.replay("latest", [target.offset]) == 1
    runner.run_once()
    runner.flush()
    assert store.bus.consumers.parked("latest") == []
    row = model.latest(channel)
    assert row is not None and row.updates == len(updates)  # each record's effect once
    latest = updates[-1]
    assert (row.offset, row.supported_turn) == (latest.offset, latest.event.supported_turn)  # type: ignore[attr-defined]
    model.replay(target)  # handed over again: the process died before the runner noted it
    assert model.latest(channel) == row
    runner.close()


def test_a_reset_undone_by_the_handlers_own_position_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = chanlog.EventStore(projections=[])
    store.append_batch(Workload(channels=2, turns=4, seed=1).events())
    path = tmp_path / "channels.sqlite"
    with store.bus.consumer("channels", ChannelReadModel(path=path)) as runner:
        runner.drain()
    store.bus.consumers.reset("channels", "earliest")
    with (
        caplog.at_level(logging.WARNING, "chanlog.bus"),
        store.bus.consumer("channels", ChannelReadModel(path=path)) as runner,
    ):
        assert runner.drain() == 0
    assert store.bus.consumers.info("channels").state.position == len(store)
    assert f"past the stored position 0; going on from {len(store)}" in caplog.text
    assert "after a reset, the reset is undone" in caplog.text
