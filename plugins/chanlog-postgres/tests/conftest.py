"""Fixtures for the PostgreSQL tests: the server to use, and a fresh schema per test.

The tests read ``CHANLOG_TEST_POSTGRES_DSN`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``).
Without it they are skipped, saying so; with ``CHANLOG_REQUIRE_POSTGRES=1`` (set by CI) a
missing variable or an unreachable server fails them instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from chanlog_postgres import PostgresBackend, drop_schema

DSN_VARIABLE = "CHANLOG_TEST_POSTGRES_DSN"
REQUIRE_VARIABLE = "CHANLOG_REQUIRE_POSTGRES"
EXAMPLE_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of the test server, checked to answer; skips (or fails, in CI) otherwise."""
    dsn = os.environ.get(DSN_VARIABLE, "").strip()
    if not dsn:
        _unavailable(f"{DSN_VARIABLE} is not set (e.g. {DSN_VARIABLE}={EXAMPLE_DSN})")
    try:
        with psycopg.connect(dsn, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {DSN_VARIABLE} cannot be reached: {exc}")
    return dsn


@pytest.fixture
def new_schema(postgres_dsn: str) -> Iterator[Callable[[], str]]:
    """Makes unique schema names; every schema made is dropped when the test ends."""
    made: list[str] = []

    def make() -> str:
        name = f"chanlog_test_{uuid.uuid4().hex[:16]}"
        made.append(name)
        return name

    yield make
    for name in made:
        drop_schema(postgres_dsn, name)


@pytest.fixture
def schema(new_schema: Callable[[], str]) -> str:
    """A schema name no other test uses (dropped after the test)."""
    return new_schema()


@pytest.fixture
def open_postgres(postgres_dsn: str, schema: str) -> Iterator[Callable[..., PostgresBackend]]:
    """Opens handles on the test's log (options may be overridden); closes them after."""
    opened: list[PostgresBackend] = []

    def open_handle(**options: object) -> PostgresBackend:
        options.setdefault("schema", schema)
        backend = PostgresBackend(dsn=postgres_dsn, **options)  # type: ignore[arg-type]
        opened.append(backend)
        return backend

    yield open_handle
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(open_postgres: Callable[..., PostgresBackend]) -> PostgresBackend:
    """A handle on a new, empty log in its own schema."""
    return open_postgres()


@pytest.fixture
def admin(postgres_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection, to inspect or tamper with the server directly."""
    with psycopg.connect(postgres_dsn, autocommit=True, connect_timeout=5) as connection:
        yield connection
