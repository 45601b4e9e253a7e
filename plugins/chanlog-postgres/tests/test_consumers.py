"""Durable consumers in PostgreSQL beyond the conformance suite: layout version 2 and the
upgrade from version 1, the server's clock, row locks, and connections dropped by the server
(what a restart does to a client)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from chanlog_postgres import SCHEMA_VERSION, PostgresBackend
from chanlog_postgres.schema import TABLES, TABLES_V1
from psycopg.conninfo import make_conninfo

from chanlog import EventStore
from chanlog.backends.consumer_store import KeepsConsumers, MovesConsumersInTransaction
from chanlog.errors import NotFound, StorageError
from chanlog.records import PositionMove
from chanlog.testing.events import sample_events, stored_records
from held_children import first_lines_of_held_children

pytestmark = pytest.mark.postgres

Open = Callable[..., PostgresBackend]
_T = TypeVar("_T")


def _tables(admin: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
    )
    return {row[0] for row in rows}


def _version(admin: psycopg.Connection[Any], schema: str) -> int:
    row = admin.execute(f'SELECT version FROM "{schema}".schema_version').fetchone()
    assert row is not None
    return int(row[0])


def _server_now(admin: psycopg.Connection[Any]) -> float:
    row = admin.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
    assert row is not None
    return float(row[0])


def _make_v1(open_postgres: Open, admin: psycopg.Connection[Any], schema: str) -> list[Any]:
    """A log as layout version 1 left it (version 2 only adds the consumer tables): five
    records and a snapshot. Returns the records."""
    backend = open_postgres()
    with backend.write() as transaction:
        records = stored_records(sample_events(5), transaction.head)
        transaction.append(records)
    backend.close()
    admin.execute(f'DROP TABLE "{schema}".parked_records, "{schema}".consumers')
    admin.execute(f'UPDATE "{schema}".schema_version SET version = 1')
    assert _tables(admin, schema) == set(TABLES_V1)
    return records


def _after_reconnect(operation: Callable[[], _T]) -> _T:
    """``operation()`` once the pool has replaced the connections the server dropped: an
    operation in flight when its connection is dropped fails (with a StorageError); an idle
    connection the server dropped is replaced before it is lent."""
    for _ in range(4):
        try:
            return operation()
        except StorageError:
            continue
    return operation()


# -- layout version 2 ------------------------------------------------------------------------


def test_the_backend_and_its_transactions_keep_consumers(backend: PostgresBackend) -> None:
    # The rows of the capability table in chanlog.backends.capabilities.
    assert isinstance(backend, KeepsConsumers)
    with backend.write() as transaction:
        assert isinstance(transaction, MovesConsumersInTransaction)


def test_a_v1_schema_is_upgraded_in_place_by_a_writer(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    records = _make_v1(open_postgres, admin, schema)
    backend = open_postgres()
    assert SCHEMA_VERSION == 2
    assert _version(admin, schema) == 2
    assert _tables(admin, schema) == set(TABLES)
    assert list(backend.read(0, 10)) == records
    assert backend.consumer_states() == []
    backend.ensure_consumer("audit", 0, ["chanlog.>"])
    backend.acquire_lease("audit", "h1", 60)
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(2, start=5), transaction.head))
        transaction.move_consumer(PositionMove("audit", "h1", 7, handled=7))
    state = open_postgres().consumer_state("audit")
    assert state is not None
    assert (state.position, state.handled) == (7, 7)


def test_a_v1_schema_read_only_keeps_no_consumers_until_a_writer_upgrades_it(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    records = _make_v1(open_postgres, admin, schema)
    reader = open_postgres(read_only=True)
    assert list(reader.read(0, 10)) == records
    assert reader.consumer_state("audit") is None
    assert reader.consumer_states() == []
    with pytest.raises(NotFound, match="audit"):
        reader.parked_records("audit")
    with pytest.raises(StorageError, match="read-only"):
        reader.ensure_consumer("audit", 0, ["chanlog.>"])
    assert _version(admin, schema) == 1  # a read-only open never upgrades
    writer = open_postgres()
    writer.ensure_consumer("audit", 3, ["chanlog.>"])
    assert reader.consumer_state("audit") == writer.consumer_state("audit")
    assert reader.parked_records("audit") == []


def test_concurrent_writers_opening_a_v1_schema_upgrade_it_once(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    _make_v1(open_postgres, admin, schema)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            open_postgres().ensure_consumer("audit", 0, ["chanlog.>"])
        except BaseException as exc:  # reported below: a thread cannot fail the test
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _version(admin, schema) == 2
    assert [state.name for state in open_postgres().consumer_states()] == ["audit"]


# -- the upgrade under faults ------------------------------------------------------------------

UPGRADE_CHILD = Path(__file__).parents[3] / "tests" / "backends" / "upgrade_child.py"


def _child(mode: str, dsn: str, schema: str, *more: str) -> list[str]:
    return [
        sys.executable,
        str(UPGRADE_CHILD),
        mode,
        json.dumps({"dsn": dsn, "schema": schema}),
        *more,
    ]


def _assert_whole(
    postgres_dsn: str, admin: psycopg.Connection[Any], schema: str, records: list[Any]
) -> int:
    """The schema is of layout version 1 or 2 with that version's tables, opens for writing,
    holds ``records`` and verifies. Returns the version it had."""
    version = _version(admin, schema)
    assert _tables(admin, schema) == set(TABLES_V1 if version == 1 else TABLES)
    with EventStore(PostgresBackend(dsn=postgres_dsn, schema=schema), projections=[]) as store:
        assert list(store.backend.read(0, len(records) + 5)) == records
        assert store.verify() == len(records)
    assert _version(admin, schema) == SCHEMA_VERSION
    return version


@pytest.mark.slow
def test_a_kill_at_any_point_of_an_upgrade_leaves_a_whole_schema(
    postgres_dsn: str, admin: psycopg.Connection[Any], new_schema: Callable[[], str]
) -> None:
    """Every statement from the schema lock to the one after the commit, killed on a fresh
    layout version 1 schema; 0.6 s a point."""

    def old_schema() -> tuple[str, list[Any]]:
        name = new_schema()
        opened: list[PostgresBackend] = []

        def open_old(**options: Any) -> PostgresBackend:
            opened.append(PostgresBackend(dsn=postgres_dsn, schema=name, **options))
            return opened[-1]

        return name, _make_v1(open_old, admin, name)

    schema, _ = old_schema()
    dry = subprocess.run(
        _child("open", postgres_dsn, schema, "-1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    points = dry.stdout.splitlines()
    first = next(n for n, point in enumerate(points, 1) if "pg_advisory_xact_lock" in point)
    committed = points.index("psycopg commit ()") + 1
    outcomes = {}
    for kill_at in range(first, committed + 2):
        schema, records = old_schema()
        killed = subprocess.run(
            _child("open", postgres_dsn, schema, str(kill_at)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert killed.returncode == -9, (kill_at, killed.stderr)
        outcomes[kill_at] = _assert_whole(postgres_dsn, admin, schema, records)
    assert {v for k, v in outcomes.items() if k < committed} == {1}
    assert {v for k, v in outcomes.items() if k > committed} == {SCHEMA_VERSION}


def test_processes_opening_a_v1_schema_at_once_all_open_it(
    open_postgres: Open, postgres_dsn: str, admin: psycopg.Connection[Any], schema: str
) -> None:
    records = _make_v1(open_postgres, admin, schema)
    said = first_lines_of_held_children([_child("hold", postgres_dsn, schema)] * 4)
    assert said == ["open"] * 4
    assert _assert_whole(postgres_dsn, admin, schema, records) == SCHEMA_VERSION


def test_an_older_writer_appending_through_the_upgrade_loses_nothing(
    open_postgres: Open, postgres_dsn: str, admin: psycopg.Connection[Any], schema: str
) -> None:
    """Layout version 2 only adds tables, so a writer of version 1 (here a handle opened
    before the schema was taken back to version 1: its appends are version 1's) goes on
    appending through the upgrade; it would refuse the schema only when opened again."""
    old_writer = open_postgres()
    records = _make_v1(open_postgres, admin, schema)
    started, failures = threading.Event(), []

    def append() -> None:
        try:
            for number in range(5, 205, 4):
                with old_writer.write() as transaction:
                    batch = stored_records(sample_events(4, start=number), transaction.head)
                    transaction.append(batch)
                records.extend(batch)
                started.set()
        except BaseException as exc:  # reported below: a thread cannot fail the test
            failures.append(exc)
            started.set()

    writer = threading.Thread(target=append)
    writer.start()
    started.wait(30)
    open_postgres().close()  # the upgrade, while the old writer appends
    assert _version(admin, schema) == SCHEMA_VERSION
    writer.join(60)
    assert failures == []
    assert len(records) == 205
    assert _assert_whole(postgres_dsn, admin, schema, records) == SCHEMA_VERSION


@pytest.mark.parametrize("read_only", [False, True])
def test_a_duplicated_layout_version_row_is_refused(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, read_only: bool
) -> None:
    # The table's key allows one row; an edit by hand that drops it may leave two, and which
    # one a query returns first is not defined.
    _make_v1(open_postgres, admin, schema)
    admin.execute(f'ALTER TABLE "{schema}".schema_version DROP CONSTRAINT schema_version_pkey')
    admin.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (2)')
    with pytest.raises(StorageError, match=r"damaged \(schema_version has 2 rows: versions 1, 2"):
        open_postgres(read_only=read_only)
    assert _tables(admin, schema) == set(TABLES_V1)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_v1_schema_that_has_consumer_tables_is_refused_as_damaged(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, read_only: bool
) -> None:
    # A version 2 schema taken back to version 1 by hand, half-way.
    open_postgres().close()
    admin.execute(f'DROP TABLE "{schema}".parked_records')
    admin.execute(f'UPDATE "{schema}".schema_version SET version = 1')
    with pytest.raises(
        StorageError,
        match=r"damaged \(layout version 1, but it has the tables consumers of version 2",
    ):
        open_postgres(read_only=read_only)
    assert _version(admin, schema) == 1


def test_a_newer_layout_is_refused_read_only_too(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    open_postgres().close()
    admin.execute(f'UPDATE "{schema}".schema_version SET version = %s', (SCHEMA_VERSION + 1,))
    with pytest.raises(
        StorageError, match=rf"layout version {SCHEMA_VERSION + 1}, written by a newer"
    ):
        open_postgres(read_only=True)


# -- the server decides ------------------------------------------------------------------------


def test_lease_times_come_from_the_servers_clock(
    backend: PostgresBackend, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.ensure_consumer("clock", 0, ["chanlog.>"])
    before = _server_now(admin)
    monkeypatch.setattr(time, "time", lambda: 1_000.0)  # this client's clock is far off
    state = backend.acquire_lease("clock", "h1", 60)
    monkeypatch.undo()
    after = _server_now(admin)
    assert state.lease_expires_at is not None
    assert before + 60 <= state.lease_expires_at <= after + 60


def test_whether_a_lease_runs_is_judged_by_the_servers_clock(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``chanlog consumers`` and ``chanlog run`` ask the server what time it is: a machine
    whose clock is an hour ahead still sees the lease running, and an hour behind does not
    see an expired one running."""
    from chanlog import EventStore

    with EventStore(backend, projections=[]) as store:
        backend.ensure_consumer("clock", 0, ["chanlog.>"])
        backend.acquire_lease("clock", "h1", 60)
        backend.ensure_consumer("expired", 0, ["chanlog.>"])
        backend.acquire_lease("expired", "h2", 0.01)
        time.sleep(0.05)
        assert abs(backend.consumer_clock() - time.time()) < 5  # one machine: one clock
        real = time.time
        for skew in (3600.0, -3600.0):
            monkeypatch.setattr(time, "time", lambda skew=skew: real() + skew)
            infos = {info.name: info for info in store.bus.consumers.infos()}
            assert infos["clock"].running
            assert infos["clock"].as_dict()["lease_holder"] == "h1"
            assert not infos["expired"].running
            assert store.bus.consumers.info("clock").running
            monkeypatch.undo()


def test_a_consumer_row_held_by_another_transaction_times_out(open_postgres: Open) -> None:
    holder = open_postgres()
    waiter = open_postgres(lock_timeout=0.2)
    holder.ensure_consumer("locked", 0, ["chanlog.>"])
    holder.acquire_lease("locked", "h1", 60)
    with holder.write() as transaction:
        transaction.move_consumer(PositionMove("locked", "h1", 1))  # holds the row lock
        with pytest.raises(StorageError, match="held the consumer's row for more than"):
            waiter.acquire_lease("locked", "h2", 60)
    state = waiter.consumer_state("locked")
    assert state is not None
    assert state.position == 1


# -- connections the server dropped ------------------------------------------------------------


def _dropping_backend(postgres_dsn: str, schema: str) -> tuple[PostgresBackend, str]:
    application = f"chanlog-consumers-{schema[-8:]}"
    backend = PostgresBackend(
        dsn=make_conninfo(postgres_dsn, application_name=application), schema=schema
    )
    return backend, application


def _drop_connections(admin: psycopg.Connection[Any], application: str) -> None:
    admin.execute(
        # The timeout makes the call wait until the server processes have exited.
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
        (application,),
    )


def test_consumers_survive_dropped_connections(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[Any]
) -> None:
    backend, application = _dropping_backend(postgres_dsn, schema)
    try:
        backend.ensure_consumer("durable", 0, ["chanlog.>"])
        taken = backend.acquire_lease("durable", "h1", 60)
        _drop_connections(admin, application)  # idle ones: replaced before they are lent
        renewed = backend.acquire_lease("durable", "h1", 60)
        assert renewed.lease_expires_at is not None
        assert taken.lease_expires_at is not None
        assert renewed.lease_expires_at >= taken.lease_expires_at
        backend.move_consumer(PositionMove("durable", "h1", 4, handled=4))
        _drop_connections(admin, application)
        state = backend.consumer_state("durable")
        assert state is not None
        assert (state.position, state.handled, state.lease_holder) == (4, 4, "h1")
    finally:
        backend.close()


def test_a_move_whose_connection_drops_before_the_commit_is_not_applied(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[Any]
) -> None:
    backend, application = _dropping_backend(postgres_dsn, schema)
    try:
        backend.ensure_consumer("tx", 0, ["chanlog.>"])
        backend.acquire_lease("tx", "h1", 60)
        before = backend.consumer_state("tx")

        def write() -> None:
            with backend.write() as transaction:
                transaction.append(stored_records(sample_events(2), transaction.head))
                transaction.move_consumer(PositionMove("tx", "h1", 2, handled=2))
                _drop_connections(admin, application)  # the server goes away mid-transaction

        with pytest.raises(StorageError, match="cannot append"):
            write()
        assert _after_reconnect(backend.head).length == 0
        assert _after_reconnect(lambda: backend.consumer_state("tx")) == before
    finally:
        backend.close()


def test_a_running_consumer_rides_out_dropped_connections(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[Any]
) -> None:
    """The server drops every connection of the node three times while a consumer runs and
    records keep coming: the runner retries, keeps its lease and hands every record over
    in order (at least once), ending at the end of the log."""
    from chanlog import EventStore

    backend, application = _dropping_backend(postgres_dsn, schema)
    handled: list[int] = []
    with EventStore(backend, projections=[]) as store:
        runner = store.bus.consumer(
            "riding", lambda record: handled.append(record.offset), lease_ttl=30.0
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            total = 0
            for round_number in range(3):
                for records in _chunks(sample_events(300, start=total), 100):
                    _after_reconnect(partial(store.append_batch, records))
                total += 300
                _drop_connections(admin, application)
                time.sleep(0.2 * round_number)
            deadline = time.monotonic() + 30
            while not handled or handled[-1] != total - 1:
                assert time.monotonic() < deadline, f"handled up to {handled[-1:]} of {total}"
                time.sleep(0.05)
            assert thread.is_alive()
            # The runner met the drops (each dropped connection fails one operation).
            assert (runner.stats.last_error or "").startswith("StorageError")
        finally:
            stop.set()
            thread.join(30)
        # Every record, each first handed over in offset order (a redelivery after a drop
        # starts again at the committed position, which is never past what was handled).
        assert list(dict.fromkeys(handled)) == list(range(total))
        state = _after_reconnect(lambda: backend.consumer_state("riding"))
        assert state is not None
        assert state.position == total


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
