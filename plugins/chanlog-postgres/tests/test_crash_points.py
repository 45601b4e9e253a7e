"""A node on PostgreSQL, killed at every point of its life, opens again whole: the scenario
of ``tests/backends/crash_points.py``, each kill on a fresh schema. A kill there is a client
gone before a statement was sent: the server rolls back its open transaction, so what must
hold is that no operation of chanlog spans two transactions in a way a kill between them
leaves refused or wrong (a new log's schema and its recorded serializer, a snapshot and its
pruning, a consumer's position and its lease)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backends.crash_points import kill_at_every_point, stride

pytestmark = pytest.mark.postgres


@pytest.mark.slow
def test_a_kill_at_any_point_of_a_nodes_life_leaves_a_log_that_opens_whole(
    postgres_dsn: str, new_schema: Callable[[], str], tmp_path: Path
) -> None:
    """About 4,000 points, 3 s each: CI kills at every 50th, from a random start."""

    def fresh(name: str) -> dict[str, Any]:
        del name
        return {"name": "postgres", "dsn": postgres_dsn, "schema": new_schema()}

    every = stride(50)
    assert kill_at_every_point(fresh, tmp_path, every) >= 3000 // every
