"""The connection pool, kept usable across a server's restart.

psycopg_pool alone recovers slowly from an outage: it retries a lost connection with a delay
that doubles without bound (1, 2, 4 ... 128 s) for five minutes, so a server back after a
three-minute outage stayed unused for up to two more; and it hands out an idle connection
whose server has already hung up, which fails the caller's operation although the server is
up again. Here the pool gives up a reconnection after :data:`RECONNECT_WINDOW` seconds, so
that the next borrower starts a fresh attempt at once, and :func:`take` drops, before lending
it, any idle connection on which the server has spoken (ADR 0041).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

__all__ = ["ASK_AGAIN", "RECONNECT_WINDOW", "hung_up", "open_pool", "take"]

RECONNECT_WINDOW = 5.0
"""Seconds the pool keeps retrying one lost connection (at 1, 3 and 5 s) before it gives it
up; a borrower who then finds no connection starts a new attempt at once. This bounds the
wait between a server's return and the first connection to it, whatever the outage lasted."""

ASK_AGAIN = 1.0
"""Seconds a borrower waits for a connection before it asks the pool again: each request
lets the pool start a new connection attempt if the last one was given up meanwhile."""


def open_pool(
    dsn: str,
    *,
    name: str,
    size: int,
    connect_timeout: float,
    timeout: float,
    configure: Callable[[psycopg.Connection[Any]], None],
) -> ConnectionPool[psycopg.Connection[Any]]:
    """A closed pool of autocommit connections, 1 to ``size`` of them; the caller opens it."""
    return ConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        open=False,
        name=name,
        kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout))},
        configure=configure,
        timeout=timeout,
        reconnect_timeout=RECONNECT_WINDOW,
    )


def take(pool: ConnectionPool[psycopg.Connection[Any]], timeout: float) -> psycopg.Connection[Any]:
    """Borrow a live connection from ``pool`` within ``timeout`` seconds.

    A connection the server hung up on while it was idle (a restart, an administrator's
    ``pg_terminate_backend``) is closed and given back, which makes the pool replace it, and
    the next one is taken: after a restart the first operation runs on a new connection
    instead of failing on an old one.

    Once more connections than the pool holds were dropped this way, the next one is lent
    as it is: one that is readable then has not been hung up on (a server, or a proxy in
    front of it, that speaks first), and what the operation meets is its answer.

    Raises:
        PoolTimeout: no live connection came within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    dropped = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PoolTimeout(f"no connection within {timeout:g} s")
        try:
            connection = pool.getconn(timeout=min(left, ASK_AGAIN))
        except PoolTimeout:
            continue
        if dropped > pool.max_size or not hung_up(connection):
            return connection
        dropped += 1
        connection.close()
        pool.putconn(connection)


def hung_up(connection: psycopg.Connection[Any]) -> bool:
    """Whether the server has closed, or spoken on, this idle connection.

    A pooled connection is idle between operations and does not LISTEN, so the server has
    nothing to say on it: anything readable is its goodbye (a ``FATAL`` error before it
    closes the socket, or the close itself). A poll with no timeout costs a system call,
    not a round trip. In the rare case that the server sent something harmless, the cost is
    one new connection, never a failed operation.
    """
    if connection.closed:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
