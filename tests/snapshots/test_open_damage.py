"""A stored record that does not fold (after the latest snapshot) makes opening fail with
an IntegrityError naming its offset; the records around it can still be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import IntegrityError
from chanlog.events import ObjectiveApproved
from chanlog.store import EventStore
from chanlog.workload import Workload

NEVER_CREATED = "0x" + "ee" * 32


def _damaged_log(path: Path) -> int:
    workload = Workload(channels=2, turns=10, seed=5, messages=0, challenge_probability=0)
    events = list(workload.events())
    with EventStore(SqliteBackend(path)) as store:
        store.append_batch(events[:20])
        store.snapshot()
        store.append_batch(events[20:30])
        length = len(store)
    # A writer with validation off (or an editor of the file) leaves an event that the
    # objective projection refuses: approving an objective never created.
    with EventStore(SqliteBackend(path), projections=[]) as unchecked:
        bad = unchecked.append(ObjectiveApproved(objective_id=NEVER_CREATED, timestamp_ms=1))
        unchecked.append_batch(events[30:35])
    assert bad == length
    return bad


def test_opening_names_the_offset_that_does_not_fold(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    bad = _damaged_log(path)
    with pytest.raises(IntegrityError) as error:
        EventStore(SqliteBackend(path))
    assert error.value.offset == bad
    message = str(error.value)
    assert f"offset {bad}" in message and "objective-approved" in message
    assert "chanlog verify" in message and "fails its own rules" in message


def test_the_records_around_it_can_still_be_read(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    bad = _damaged_log(path)
    backend = SqliteBackend(path, read_only=True)
    with EventStore(backend, projections=[], read_only=True) as store:
        around = list(store.read_range(bad - 2, bad + 3))
        assert [record.offset for record in around] == list(range(bad - 2, bad + 3))
        assert around[2].event == ObjectiveApproved(objective_id=NEVER_CREATED, timestamp_ms=1)
        assert store.verify() == len(store)  # every record is what was written
