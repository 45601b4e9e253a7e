"""chanlog_postgres.pooling without a server: which idle connections are lent, which are
replaced, and that a pool of connections that are all readable cannot keep a borrower
looping (real connections: tests/test_server_restart.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from chanlog_postgres.pooling import hung_up, take
from psycopg_pool import PoolTimeout

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool


class FakeConnection:
    """An idle connection over one end of a socket pair; the test plays the server."""

    def __init__(self) -> None:
        self.ours, self.server = socket.socketpair()
        self.closed = False

    def fileno(self) -> int:
        return self.ours.fileno()

    def close(self) -> None:
        self.closed = True
        self.ours.close()
        self.server.close()


class FakePool:
    """Lends connections made by ``make``; keeps what was given back."""

    max_size = 2

    def __init__(self, make: Any) -> None:
        self.make = make
        self.lent: list[FakeConnection] = []
        self.returned: list[FakeConnection] = []

    def getconn(self, timeout: float) -> FakeConnection:
        connection: FakeConnection = self.make()
        self.lent.append(connection)
        return connection

    def putconn(self, connection: FakeConnection) -> None:
        self.returned.append(connection)


def _take(pool: FakePool) -> object:
    """take() over the fake pool, cast: take asks a pool for no more than FakePool has."""
    return take(cast("ConnectionPool[psycopg.Connection[Any]]", pool), 1.0)


@pytest.fixture
def made() -> Iterator[list[FakeConnection]]:
    connections: list[FakeConnection] = []
    yield connections
    for connection in connections:
        if not connection.closed:
            connection.close()


def _maker(made: list[FakeConnection], goodbyes: int) -> Any:
    """Connections of which the first ``goodbyes`` were hung up on by the server."""

    def make() -> FakeConnection:
        connection = FakeConnection()
        if len(made) < goodbyes:
            connection.server.sendall(b"E FATAL: terminating connection")
            connection.server.close()
        made.append(connection)
        return connection

    return make


def test_an_idle_connection_the_server_left_alone_is_lent(made: list[FakeConnection]) -> None:
    pool = FakePool(_maker(made, goodbyes=0))
    connection = _take(pool)
    assert connection is made[0]
    assert not hung_up(cast("psycopg.Connection[Any]", connection))  # a FakeConnection
    assert pool.returned == []


def test_connections_the_server_hung_up_on_are_replaced_before_one_is_lent(
    made: list[FakeConnection],
) -> None:
    pool = FakePool(_maker(made, goodbyes=2))
    connection = _take(pool)
    assert connection is made[2]
    assert pool.returned == made[:2]
    assert all(dropped.closed for dropped in made[:2])


def test_a_pool_whose_connections_are_all_readable_lends_one_after_a_round(
    made: list[FakeConnection],
) -> None:
    pool = FakePool(_maker(made, goodbyes=100))
    connection = _take(pool)
    assert connection is made[FakePool.max_size + 1]  # lent as it is: the operation decides
    assert len(pool.returned) == FakePool.max_size + 1


def test_a_closed_connection_is_hung_up() -> None:
    connection = FakeConnection()
    connection.close()
    assert hung_up(cast("psycopg.Connection[Any]", connection))  # a FakeConnection


def test_no_connection_in_time_is_a_pool_timeout() -> None:
    class Empty:
        max_size = 1

        def getconn(self, timeout: float) -> Any:
            raise PoolTimeout("empty")

    with pytest.raises(PoolTimeout, match=r"no connection within 0\.05 s"):
        take(cast("ConnectionPool[psycopg.Connection[Any]]", Empty()), 0.05)  # a stand-in
