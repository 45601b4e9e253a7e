"""A record's error names the record (ADR 0058): the runner writes it beginning with the
record's offset, as the parked record's error and as the consumer's last error, so
``chanlog consumers`` (text and ``--json``) says which record failed without a look at
``chanlog consumers parked``, and a handler's reason (which names no record) reads apart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import chanlog
from bus.conftest import Recorder
from bus.processes import cli
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus import ConsumerRunner
from chanlog.bus.handlers import Handler
from chanlog.records import RecordedEvent
from chanlog.testing import sample_events

FAST: dict[str, Any] = {"backoff": [0.0], "max_deliver": 2}


def _pass(store: chanlog.EventStore, handler: Handler) -> ConsumerRunner:
    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()
    return runner


def _store() -> chanlog.EventStore:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(8))
    return store


def test_a_parked_records_error_begins_with_its_offset_wherever_it_is_shown() -> None:
    store = _store()
    runner = _pass(store, Recorder(fail_on={4}))
    [parked] = store.bus.consumers.parked("c")
    assert parked.error.startswith("offset 4: RuntimeError: cannot handle 4 (at "), parked.error
    assert store.bus.consumers.state("c").last_error == parked.error
    assert runner.stats.last_error == parked.error  # chanlog run's row, in its process

    store.bus.consumers.replay("c")
    _pass(store, Recorder(fail_on={4}))  # fails again: its new error names it too
    [parked] = store.bus.consumers.parked("c")
    assert parked.attempts == 4 and parked.error.startswith("offset 4: RuntimeError")
    assert store.bus.consumers.state("c").last_error == parked.error


def _same_failure(record: RecordedEvent) -> None:
    if record.offset in (2, 6):
        raise RuntimeError("the chain client is down")


def test_records_failing_alike_are_told_apart_and_the_one_left_is_shown() -> None:
    # The same exception from two records: one replayed with success, the last error is
    # the other's, by its offset (not an error text both shared).
    store = _store()
    _pass(store, _same_failure)
    assert (store.bus.consumers.state("c").last_error or "").startswith("offset 6: ")
    store.bus.consumers.replay("c", [6])
    _pass(store, lambda record: _same_failure(record) if record.offset == 2 else None)
    state = store.bus.consumers.state("c")
    assert state.parked == 1 and (state.last_error or "").startswith("offset 2: "), state


def test_chanlog_consumers_says_which_record_its_last_error_is_about(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(8))
        _pass(store, Recorder(fail_on={5}))
    listed = cli("--db", str(path), "consumers", "--json", cwd=tmp_path, env=os.environ)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["last_error"].startswith("offset 5: RuntimeError: cannot handle 5"), row
    wide = {**os.environ, "COLUMNS": "400"}  # one line per row: the cell is not folded
    table = cli("--db", str(path), "consumers", cwd=tmp_path, env=wide)
    assert table.returncode == 0, table.stderr
    assert "offset 5: RuntimeError: cannot handle 5" in table.stdout, table.stdout
