"""Several writer processes on one log share one snapshot cadence: with n = 1000, 8,000
events give 8 snapshots (±1), not one series per process (issue 13, defect 6)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.store import EventStore

WRITERS = 4
EACH = 2000
BATCH = 50

_CHILD = textwrap.dedent(
    """
    import sys
    from chanlog.backends.sqlite import SqliteBackend
    from chanlog.snapshots.policies import EveryNEvents
    from chanlog.store import EventStore
    from chanlog.workload import Workload

    path, seed, each, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    workload = Workload(channels=10, turns=100, seed=seed, messages=0, challenge_probability=0)
    events = list(workload.events())[:each]  # a prefix of a valid history is valid
    with EventStore(SqliteBackend(path), snapshot_policy=EveryNEvents(n=1000, keep=0)) as store:
        for start in range(0, each, batch):
            store.append_batch(events[start : start + batch])
    """
)


@pytest.mark.slow
def test_four_writers_take_eight_snapshots_between_them(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    EventStore(SqliteBackend(path)).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(100 + number), str(EACH), str(BATCH)]
        )
        for number in range(WRITERS)
    ]
    assert [child.wait(timeout=600) for child in children] == [0] * WRITERS
    connection = sqlite3.connect(path)
    try:
        snapshots = connection.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
        announced = connection.execute(
            "SELECT COUNT(*) FROM events WHERE event_type = 'snapshot-created'"
        ).fetchone()[0]
    finally:
        connection.close()
    assert 7 <= snapshots <= 9
    assert announced == snapshots  # each snapshot committed with its event (keep=0: no pruning)
    with EventStore(SqliteBackend(path)) as store:
        assert len(store) == WRITERS * EACH + announced
        assert store.check_integrity().snapshots == snapshots
