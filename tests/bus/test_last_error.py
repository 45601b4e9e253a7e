"""A consumer's last error is a failure that still stands (ADR 0054): a record's error ends
when the record leaves the parked list (replayed with success, handled again after a reset,
dropped), and the last error is then the latest failure still parked, or none; so
``chanlog consumers`` never shows a failure that is over."""

from __future__ import annotations

import json
import os
from pathlib import Path

import chanlog
from bus.conftest import Recorder
from bus.processes import cli
from chanlog.backends.sqlite import SqliteBackend
from chanlog.testing import sample_events

FAST = {"backoff": [0.0], "max_deliver": 2}


def _pass(store: chanlog.EventStore, handler: Recorder) -> None:
    with store.bus.consumer("c", handler, **FAST) as runner:
        runner.drain()


def _last_error(store: chanlog.EventStore) -> str | None:
    return store.bus.consumers.info("c").state.last_error


def _store() -> chanlog.EventStore:
    store = chanlog.EventStore(projections=[])
    store.append_batch(sample_events(8))
    return store


def test_a_record_that_succeeds_on_a_retry_leaves_no_last_error() -> None:
    store = _store()
    handler = Recorder(fail_on={3}, fail_times=1)
    _pass(store, handler)
    assert handler.failed == {3: 1} and 3 in handler.offsets
    assert _last_error(store) is None


def test_a_parked_record_replayed_with_success_takes_its_error_with_it() -> None:
    store = _store()
    _pass(store, Recorder(fail_on={3, 5}))
    assert "cannot handle 5" in (_last_error(store) or "")

    store.bus.consumers.replay("c", [5])
    _pass(store, Recorder(fail_on={3}))
    # 5 is over; 3 is still parked, so its error is the one that stands.
    assert "cannot handle 3" in (_last_error(store) or "")
    store.bus.consumers.replay("c")
    _pass(store, Recorder())
    info = store.bus.consumers.info("c")
    assert (info.state.parked, info.state.last_error, info.lag) == (0, None, 0)


def test_a_parked_record_handled_after_a_reset_takes_its_error_with_it() -> None:
    store = _store()
    _pass(store, Recorder(fail_on={5}))
    assert "cannot handle 5" in (_last_error(store) or "")
    store.bus.consumers.reset("c", 4)
    _pass(store, Recorder())
    info = store.bus.consumers.info("c")
    assert (info.state.parked, info.state.last_error) == (0, None)


def test_a_dropped_record_takes_its_error_with_it() -> None:
    store = _store()
    _pass(store, Recorder(fail_on={2, 6}))
    assert store.bus.consumers.drop("c", [6]) == 1
    assert "cannot handle 2" in (_last_error(store) or "")
    assert store.bus.consumers.drop("c") == 1
    assert _last_error(store) is None


def test_chanlog_consumers_shows_no_error_once_its_record_was_replayed(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(8))
        _pass(store, Recorder(fail_on={4}))
        store.bus.consumers.replay("c")
        _pass(store, Recorder())
    listed = cli("--db", str(path), "consumers", "--json", cwd=tmp_path, env=os.environ)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["parked"], row["last_error"], row["lag"]) == (0, None, 0)
