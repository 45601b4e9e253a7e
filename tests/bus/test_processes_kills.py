"""Issue 15: a durable consumer killed with SIGKILL at random moments never skips a record,
and the effectively-once handlers hold each record's effect exactly once (SQLite; the
PostgreSQL plugin's tests run the same scenario)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.scenarios import sigkill_at_random_moments

KILLS = 22


@pytest.mark.slow
def test_sigkill_at_random_moments_never_skips_a_record_sqlite(tmp_path: Path) -> None:
    backend = {"name": "sqlite", "path": "log.db", "durability": "full"}
    report = sigkill_at_random_moments(
        backend | {"path": str(tmp_path / "log.db")}, tmp_path, KILLS, seed=15
    )
    assert report.kills == KILLS
    # The kills landed in the middle of work: some runs were handed records again.
    assert report.rounds_with_redelivery >= 5, report
