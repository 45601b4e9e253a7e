"""A storage failure at each write a durable consumer makes, on PostgreSQL: the shared cases
of ``tests/bus/consumer_faults.py``, and the server ending the connection of a runner's
commit while it waits for the consumer's row (``pg_terminate_backend``: an administrator,
a failover, a server restart)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from chanlog_postgres import PostgresBackend
from psycopg.conninfo import make_conninfo

import chanlog
from bus.conftest import until
from bus.consumer_faults import *  # noqa: F403 - the shared cases, collected here
from bus.consumer_faults import ANSWERED, NAME, Node

pytestmark = pytest.mark.postgres


@pytest.fixture
def application(schema: str) -> str:
    """The application name of the test's connections (to find and end them)."""
    return f"chanlog-faults-{schema[-8:]}"


@pytest.fixture
def node(postgres_dsn: str, schema: str, application: str) -> Iterator[Node]:
    dsn = make_conninfo(postgres_dsn, application_name=application)
    backend = PostgresBackend(dsn=dsn, schema=schema, pool_size=3)
    with chanlog.EventStore(backend, projections=[], snapshot_policy="never") as store:
        yield Node(store)


def _ended_while_waiting(
    admin: psycopg.Connection[Any], schema: str, application: str, commit: Callable[[], object]
) -> BaseException | None:
    """Run ``commit`` in a thread while the consumer's row is locked by another session; end
    the connection of ``commit`` once it waits for that lock; return what it raised."""
    raised: list[BaseException] = []

    def committing() -> None:
        try:
            commit()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=committing, daemon=True)
    with admin.transaction():
        admin.execute(f'SELECT 1 FROM "{schema}".consumers WHERE name = %s FOR UPDATE', (NAME,))
        thread.start()
        waiting = (
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock'"
        )
        until(lambda: admin.execute(waiting, (application,)).fetchone() is not None)
        [(pid,)] = admin.execute(waiting, (application,)).fetchall()
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    thread.join(30)
    assert not thread.is_alive()
    return raised[0] if raised else None


def test_a_position_commit_whose_connection_the_server_ends(
    node: Node, admin: psycopg.Connection[Any], schema: str, application: str
) -> None:
    assert node.step(lambda: node.runner.run_once(limit=2))  # 0, 1 handled, not committed
    raised = _ended_while_waiting(admin, schema, application, node.runner.flush)
    assert isinstance(raised, chanlog.StorageError), raised
    assert node.state().position == 0
    node.drain()
    node.runner.close()
    node.check()
    assert node.handler.calls.count(0) == 1  # kept pending, committed by the next commit
    node.check_released()


def test_a_handlers_appends_whose_connection_the_server_ends(
    node: Node, admin: psycopg.Connection[Any], schema: str, application: str
) -> None:
    """The appends and the move in one transaction, its connection ended while the move
    waits for the consumer's row: nothing of it is kept, the record is handed over again."""
    assert node.step(lambda: node.runner.run_once(limit=ANSWERED))  # up to the answered one
    node.step(node.runner.flush)
    raised = _ended_while_waiting(admin, schema, application, lambda: node.runner.run_once(limit=1))
    assert isinstance(raised, chanlog.StorageError), raised
    assert node.handler.calls.count(ANSWERED) == 1
    node.drain()
    node.runner.close()
    node.check()  # one ack
    assert node.handler.calls.count(ANSWERED) == 2


def test_a_renewal_whose_connection_the_server_ends(
    node: Node, admin: psycopg.Connection[Any], schema: str, application: str
) -> None:
    """The heartbeat's renewal ends with its connection: logged, the lease kept, the next
    beat renews it."""
    assert node.step(node.runner.start)
    before = node.state().lease_expires_at
    raised = _ended_while_waiting(admin, schema, application, node.beat)
    assert raised is None  # a beat logs a failure, never raises it
    assert not node.runner._lease.lost.is_set()
    node.beat()
    assert node.state().lease_expires_at > before
    node.drain()
    node.runner.close()
    node.check()
