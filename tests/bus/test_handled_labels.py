"""``chanlog run`` counts what its process handled, ``chanlog consumers`` what the consumer
handled in all: each says which it shows ("handled (this run)", "handled (total)"), and
``chanlog run`` shows both, in its table and its log lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import chanlog
from bus.conftest import Recorder, until
from bus.processes import cli
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.settings import BusSettings, ConsumerSettings
from chanlog.bus.spec import ConsumerSpec
from chanlog.bus.worker import Worker
from chanlog.cli.commands.bus import _COLUMNS, _cells, _plain
from chanlog.testing import sample_events


def test_chanlog_run_shows_this_runs_count_and_the_consumers_total(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(8))
        with store.bus.consumer("c", Recorder()) as runner:
            runner.drain()  # an earlier run: 8 in all
        store.append_batch(sample_events(3, start=8))
        settings = BusSettings(consumers=(ConsumerSettings(ConsumerSpec("c"), "rec"),))
        worker = Worker(store, store.bus, settings, {"rec": Recorder}, {})
        worker.start()
        try:
            until(lambda: worker.rows()[0].handled_total == 11)
            [row] = worker.rows()
            assert (row.handled, row.handled_total) == (3, 11)
            cells = dict(zip(_COLUMNS, _cells(row), strict=True))
            assert (cells["handled (this run)"], cells["handled (total)"]) == ("3", "11")
            lines: dict[str, str] = {}
            _plain([row], lines)
            assert "handled_this_run=3 handled_total=11 " in lines["c"], lines
        finally:
            worker.stop()
            assert worker.wait(10)
            worker.close()

    listed = cli("--db", str(path), "consumers", "--json", cwd=tmp_path, env=os.environ)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["handled"] == 11
    wide = {**os.environ, "COLUMNS": "400"}
    table = cli("--db", str(path), "consumers", cwd=tmp_path, env=wide)
    assert table.returncode == 0, table.stderr
    assert "handled (total)" in table.stdout, table.stdout


def test_an_ingests_row_has_no_total_to_show() -> None:
    from chanlog.bus.worker import WorkerRow

    row = WorkerRow("ingest", "nats", "running", None, 0, 5, 0, None)
    cells = dict(zip(_COLUMNS, _cells(row), strict=True))
    assert (cells["handled (this run)"], cells["handled (total)"]) == ("5", "-")
    lines: dict[str, str] = {}
    _plain([row], lines)
    assert lines["nats"] == (
        "ingest nats: running position=- lag=0 handled_this_run=5 handled_total=- parked=0"
    )
