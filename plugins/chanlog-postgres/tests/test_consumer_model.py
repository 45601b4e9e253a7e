"""The model-based test of durable consumers (``tests/bus/consumer_model.py``) on
PostgreSQL: each run on a schema of its own, dropped when the run ends."""

from __future__ import annotations

from collections.abc import Callable

from chanlog_postgres import PostgresBackend, drop_schema
from hypothesis.stateful import run_state_machine_as_test

import chanlog
from bus.consumer_model import Faults, machine, model_settings


def test_durable_consumers_never_skip_a_record_on_postgres(
    postgres_dsn: str, new_schema: Callable[[], str]
) -> None:
    def open_postgres() -> tuple[chanlog.EventStore, Faults, Callable[[], None]]:
        schema = new_schema()
        backend = PostgresBackend(dsn=postgres_dsn, schema=schema, pool_size=2)
        faults = Faults(backend)
        store = chanlog.EventStore(backend, projections=[], snapshot_policy="never")

        def cleanup() -> None:
            drop_schema(postgres_dsn, schema)

        return store, faults, cleanup

    run_state_machine_as_test(machine(open_postgres), settings=model_settings(25, 30))
