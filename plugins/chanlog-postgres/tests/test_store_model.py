"""The model-based test of the store (tests/core/store_model.py) on PostgreSQL: two stores
(two processes) writing to one log in a schema of the run's own, reopened, snapshotted and
pruned, against a fold from offset 0."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chanlog_postgres import PostgresBackend
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from chanlog.backends.base import Backend
from core.store_model import StoreModel

pytestmark = pytest.mark.postgres


def test_the_store_on_postgres_agrees_with_its_model(
    postgres_dsn: str, new_schema: Callable[[], str]
) -> None:
    class PostgresStoreModel(StoreModel):
        """Each run on a new schema (every one is dropped when the test ends)."""

        shared = True

        def open_backend(self) -> Backend:
            if not hasattr(self, "schema"):
                self.schema = new_schema()
            return PostgresBackend(dsn=postgres_dsn, schema=self.schema, pool_size=2)

    run_state_machine_as_test(
        PostgresStoreModel,
        settings=settings(
            max_examples=8,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
