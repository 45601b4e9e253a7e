"""``chanlog snapshots`` and ``chanlog snapshots prune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from chanlog.backends.sqlite import SqliteBackend
from cli.conftest import Run
from sqlite_edits import edit_database


def test_snapshots_are_listed_with_sizes_and_pruned(
    run: Run, demo_db: Path, tmp_path: Path
) -> None:
    config = tmp_path / "whole.toml"
    config.write_text('[snapshots]\npolicy = "every-n-events"\nincremental = false\n')
    for _ in range(4):
        assert run("--config", str(config), "snapshot").exit_code == 0
    listed = run("snapshots", "--json")
    assert listed.exit_code == 0, listed.output
    report = orjson.loads(listed.output)
    offsets = [entry["offset"] for entry in report["snapshots"]]
    assert offsets == [15, 16]  # the default policy keeps the latest 2 of close ones
    assert [entry["base"] for entry in report["snapshots"]] == [None, None]
    assert report["total_bytes"] == sum(entry["bytes"] for entry in report["snapshots"])
    assert 0 < report["total_bytes"] < report["file_bytes"]
    table = run("snapshots")
    assert table.exit_code == 0 and "2 snapshot(s)" in table.output
    kept_all = run("snapshots", "prune", "--keep", "0", "--json")  # 0: keep every one
    assert orjson.loads(kept_all.output)["deleted"] == []
    assert "0 keeps every snapshot" in " ".join(run("snapshots", "prune", "--help").output.split())
    pruned = run("snapshots", "prune", "--keep", "1", "--json")
    assert pruned.exit_code == 0, pruned.output
    deleted = orjson.loads(pruned.output)["deleted"]
    assert deleted == [15]
    left = [e["offset"] for e in orjson.loads(run("snapshots", "--json").output)["snapshots"]]
    assert left == [16]
    assert run("verify").exit_code == 0  # a pruned snapshot is no damage


def test_incremental_snapshots_name_their_base_and_keep_it(run: Run, demo_db: Path) -> None:
    taken = [run("snapshot", "--json") for _ in range(3)]  # each goes on with the chain
    assert [orjson.loads(result.output)["base"] for result in taken] == [None, 13, 14]
    report = orjson.loads(run("snapshots", "--json").output)
    assert [(e["offset"], e["base"]) for e in report["snapshots"]] == [
        (13, None),
        (14, 13),
        (15, 14),
    ]
    assert "snapshot 14" in run("snapshots").output
    pruned = run("snapshots", "prune", "--keep", "1", "--json")
    assert orjson.loads(pruned.output)["deleted"] == []  # 15 is read through 14 and 13
    assert run("verify").exit_code == 0


def test_snapshots_of_a_missing_log_exit_3(run: Run, db: Path) -> None:
    result = run("snapshots")
    assert result.exit_code == 3
    assert not db.exists()


def test_a_snapshot_pruned_while_they_are_listed_is_not_shown(
    run: Run, demo_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [orjson.loads(run("snapshot", "--json").output)["base"] for _ in range(2)] == [None, 13]
    read = SqliteBackend.latest_snapshot

    def pruned_meanwhile(backend: SqliteBackend, offset: int) -> object:
        # What the backend answers once another process has deleted snapshot 13 (after
        # the listing): the newest one at or before 13 is no longer 13.
        return None if offset == 13 else read(backend, offset)

    monkeypatch.setattr(SqliteBackend, "latest_snapshot", pruned_meanwhile)
    report = orjson.loads(run("snapshots", "--json").output)
    assert [(e["offset"], e["base"]) for e in report["snapshots"]] == [(14, 13)]
    assert report["total_bytes"] == report["snapshots"][0]["bytes"]
    assert "1 snapshot(s)" in run("snapshots").output


def _snapshot_with_damaged_versions(run: Run, db: Path) -> dict[str, Any]:
    """Take a snapshot, then edit its row's versions outside chanlog; return what
    ``snapshot --json`` said of it."""
    taken: dict[str, Any] = orjson.loads(run("snapshot", "--json").output)
    edit_database(
        db, f"UPDATE snapshots SET versions = 'garbage' WHERE position = {taken['offset']}"
    )
    return taken


def test_a_snapshot_row_with_damaged_versions_is_listed_named_and_replaced(
    run: Run, demo_db: Path
) -> None:
    """Every command opens past a row whose versions were edited: ``snapshots`` lists it,
    ``verify`` names it (an integrity failure, not a storage error) and ``snapshot --at``
    replaces it."""
    taken = _snapshot_with_damaged_versions(run, demo_db)
    listed = run("snapshots", "--json")
    assert listed.exit_code == 0, listed.output
    assert [e["offset"] for e in orjson.loads(listed.output)["snapshots"]] == [taken["offset"]]
    damaged = run("verify")
    assert damaged.exit_code == 1, damaged.output
    assert f"snapshot at offset {taken['offset']} has unreadable versions" in damaged.output
    again = run("snapshot", "--at", str(taken["offset"]), "--json")
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.output)["snapshot_hash"] == taken["snapshot_hash"]
    assert run("verify").exit_code == 0


def test_stats_opens_past_a_latest_snapshot_row_with_damaged_versions(
    run: Run, demo_db: Path
) -> None:
    taken = _snapshot_with_damaged_versions(run, demo_db)
    stats = run("stats", "--json")
    assert stats.exit_code == 0, stats.output
    assert orjson.loads(stats.stdout)["latest_snapshot"] == {
        "offset": taken["offset"],
        "snapshot_hash": None,
        "versions": None,
    }
    assert stats.stderr.startswith("the latest snapshot cannot be read: ")
    assert f"snapshot at offset {taken['offset']} has unreadable versions" in stats.stderr
    assert f"(take it again there: chanlog snapshot --at {taken['offset']})" in stats.stderr
    assert run("stats").exit_code == 0
