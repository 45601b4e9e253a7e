"""Stored snapshots the log does not announce, on memory and SQLite
(:mod:`snapshots.unannounced_rows`; PostgreSQL's run is in plugins/chanlog-postgres/tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from snapshots.unannounced_rows import (
    a_row_from_another_log_is_not_used,
    a_stray_row_at_the_head_is_not_announced,
)


@pytest.fixture(params=["memory", "sqlite"])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Backend]:
    if request.param == "memory":
        backend = MemoryBackend()
        return lambda: backend
    return lambda: SqliteBackend(tmp_path / "log.db")


def test_a_row_from_another_log_is_not_used(open_backend: Callable[[], Backend]) -> None:
    a_row_from_another_log_is_not_used(open_backend)


def test_a_stray_row_at_the_head_is_not_announced(open_backend: Callable[[], Backend]) -> None:
    a_stray_row_at_the_head_is_not_announced(open_backend)
