"""A snapshot row whose versions column was edited, on PostgreSQL
(tests/snapshots/damaged_versions.py): skipped by readers, replaced by a snapshot taken
again there, named by verify."""

from __future__ import annotations

import psycopg
import pytest
from chanlog_postgres import PostgresBackend

from snapshots.damaged_versions import a_row_with_damaged_versions_is_skipped

pytestmark = pytest.mark.postgres


def test_a_snapshot_row_with_damaged_versions_is_skipped(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    def damage(offset: int) -> None:
        admin.execute(
            f'UPDATE {schema}.snapshots SET versions = \'{{"channel": "x"}}\' WHERE position = %s',
            (offset,),
        )

    a_row_with_damaged_versions_is_skipped(
        lambda: PostgresBackend(dsn=postgres_dsn, schema=schema), damage
    )
