"""The chanlog backend conformance suite, run against a real PostgreSQL."""

from __future__ import annotations

import pytest
from chanlog_postgres import PostgresBackend

from chanlog.testing import BackendConformance, OpenBackend

pytestmark = pytest.mark.postgres


class TestPostgresConformance(BackendConformance):
    """Every conformance test, each on a schema of its own."""

    @pytest.fixture
    def open_backend(self, postgres_dsn: str, schema: str) -> OpenBackend:
        return lambda: PostgresBackend(dsn=postgres_dsn, schema=schema)

    @pytest.fixture
    def open_read_only(self, postgres_dsn: str, schema: str) -> OpenBackend:
        return lambda: PostgresBackend(dsn=postgres_dsn, schema=schema, read_only=True)
