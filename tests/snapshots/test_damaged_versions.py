"""A snapshot row whose versions column was edited, on SQLite
(:mod:`snapshots.damaged_versions`; PostgreSQL's run is in plugins/chanlog-postgres/tests)."""

from __future__ import annotations

from pathlib import Path

from chanlog.backends.sqlite import SqliteBackend
from snapshots.damaged_versions import a_row_with_damaged_versions_is_skipped
from sqlite_edits import edit_database


def test_a_snapshot_row_with_damaged_versions_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "log.db"

    def damage(offset: int) -> None:
        edit_database(
            path,
            f'UPDATE snapshots SET versions = \'{{"channel": "x"}}\' WHERE position = {offset}',
        )

    a_row_with_damaged_versions_is_skipped(lambda: SqliteBackend(path), damage)
