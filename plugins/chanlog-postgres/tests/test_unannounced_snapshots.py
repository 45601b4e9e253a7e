"""Stored snapshots the log does not announce, on PostgreSQL (tests/snapshots/unannounced_rows.py):
never used, never announced as the store's own, named by verify (ADR 0067)."""

from __future__ import annotations

import pytest
from chanlog_postgres import PostgresBackend

from snapshots.unannounced_rows import (
    a_row_from_another_log_is_not_used,
    a_stray_row_at_the_head_is_not_announced,
)

pytestmark = pytest.mark.postgres


def test_a_row_from_another_log_is_not_used(postgres_dsn: str, schema: str) -> None:
    a_row_from_another_log_is_not_used(lambda: PostgresBackend(dsn=postgres_dsn, schema=schema))


def test_a_stray_row_at_the_head_is_not_announced(postgres_dsn: str, schema: str) -> None:
    a_stray_row_at_the_head_is_not_announced(
        lambda: PostgresBackend(dsn=postgres_dsn, schema=schema)
    )
