"""A node on an sqlite log, killed at every point of its life, opens again whole
(:mod:`backends.crash_points`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends.crash_points import kill_at_every_point, stride


@pytest.mark.slow
def test_a_kill_at_any_point_of_a_nodes_life_leaves_a_log_that_opens_whole(
    tmp_path: Path,
) -> None:
    """About 2,500 points, 0.7 s each: CI kills at every twelfth, from a random start."""

    def fresh(name: str) -> dict[str, Any]:
        return {"name": "sqlite", "path": str(tmp_path / f"{name}.db"), "durability": "full"}

    every = stride(12)
    assert kill_at_every_point(fresh, tmp_path, every) >= 2000 // every
