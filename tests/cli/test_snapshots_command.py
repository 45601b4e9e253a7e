"""``chanlog snapshots`` and ``chanlog snapshots prune``."""

from __future__ import annotations

from pathlib import Path

import orjson

from cli.conftest import Run


def test_snapshots_are_listed_with_sizes_and_pruned(run: Run, demo_db: Path) -> None:
    for _ in range(4):
        assert run("snapshot").exit_code == 0
    listed = run("snapshots", "--json")
    assert listed.exit_code == 0, listed.output
    report = orjson.loads(listed.output)
    offsets = [entry["offset"] for entry in report["snapshots"]]
    assert offsets == [15, 16]  # the default policy keeps the latest 2 of close ones
    assert report["total_bytes"] == sum(entry["bytes"] for entry in report["snapshots"])
    assert 0 < report["total_bytes"] < report["file_bytes"]
    table = run("snapshots")
    assert table.exit_code == 0 and "2 snapshot(s)" in table.output
    pruned = run("snapshots", "prune", "--keep", "1", "--json")
    assert pruned.exit_code == 0, pruned.output
    deleted = orjson.loads(pruned.output)["deleted"]
    assert deleted == [15]
    left = [e["offset"] for e in orjson.loads(run("snapshots", "--json").output)["snapshots"]]
    assert left == [16]
    assert run("verify").exit_code == 0  # a pruned snapshot is no damage


def test_snapshots_of_a_missing_log_exit_3(run: Run, db: Path) -> None:
    result = run("snapshots")
    assert result.exit_code == 3
    assert not db.exists()
