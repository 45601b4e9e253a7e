"""A disk that fills up under an sqlite log: the append that does not fit is refused with a
StorageError naming the file, nothing of it is written or folded or delivered, the store
keeps working once there is room again, and the refused events can then be appended."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from chanlog.backends.sqlite import SqliteBackend
from chanlog.store import EventStore

CHILD = Path(__file__).with_name("disk_full_child.py")

LIMIT = 1_500_000
"""The largest file the child may write: its log fills it after a few hundred appends."""


def _run(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CHILD), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _check(path: Path, result: dict[str, Any]) -> None:
    acknowledged = dict(result["acknowledged"])
    assert len(acknowledged) == len(result["acknowledged"])  # no event acknowledged twice
    refused = set(result["refused"])
    assert refused, "the limit refused nothing"
    assert refused <= acknowledged.keys()  # every refused event was appended afterwards
    assert len(result["acknowledged"]) - len(refused) > 20  # it filled up after real work

    # The log holds exactly the acknowledged appends, at their offsets, and the automatic
    # snapshots' announcements: nothing of a refused append was written, not even in part.
    with EventStore(SqliteBackend(path)) as reopened:
        records = list(reopened.read_from(0))
        assert reopened.verify() == len(records)
    assert [record.offset for record in records] == list(range(len(records)))
    stored = {
        record.event_id: record.offset
        for record in records
        if record.event_type != "snapshot-created"
    }
    assert stored == acknowledged
    assert len(records) > len(stored)  # snapshots were taken while it filled up
    assert result["length"] == result["verified"] == len(records)

    # Every record was delivered once and in order, and the store's folded state is what
    # the file folds to.
    assert result["seen"] == list(range(len(records)))
    assert result["entities"] > 0
    assert result["mismatches"] == []
    assert result["messages"]
    assert all(message.startswith(f"{path}: ") for message in result["messages"])


def test_a_full_disk_refuses_the_append_that_does_not_fit_and_nothing_else(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.db"
    result = _run("sequential", str(path), str(LIMIT))
    _check(path, result)
    # The batch refused first was refused again while the disk stayed full, and the store
    # stayed where its last commit had left it.
    assert len(result["lengths"]) == 2
    assert all(before == after for before, after in result["lengths"])


def test_a_full_disk_under_grouped_commits_loses_no_acknowledged_append(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    result = _run("threads", str(path), str(LIMIT), "8")
    _check(path, result)
    assert len(result["lengths"]) == 8  # each caller stopped at its own refusal
