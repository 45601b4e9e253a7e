"""Fixtures for the PostgreSQL tests: the server to use, and a fresh schema per test.

The tests read ``CHANLOG_TEST_POSTGRES_DSN`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``).
Without it they are skipped, saying so; with ``CHANLOG_REQUIRE_POSTGRES=1`` (set by CI) a
missing variable or an unreachable server fails them instead, so CI cannot pass by skipping.
Tests that stop or restart a server start their own (``initdb`` and ``pg_ctl`` of the
machine's PostgreSQL, a free port, a temporary directory): the shared server is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from chanlog_postgres import PostgresBackend, drop_schema

DSN_VARIABLE = "CHANLOG_TEST_POSTGRES_DSN"
REQUIRE_VARIABLE = "CHANLOG_REQUIRE_POSTGRES"
EXAMPLE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BINDIR_VARIABLE = "CHANLOG_POSTGRES_BINDIR"


def _unavailable(reason: str) -> NoReturn:
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


# -- a server of the test's own ----------------------------------------------------------------


def _server_programs() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: $CHANLOG_POSTGRES_BINDIR, else the
    newest of Debian's /usr/lib/postgresql/<version>/bin, else wherever PATH finds them."""
    configured = os.environ.get(BINDIR_VARIABLE, "").strip()
    if configured:
        return Path(configured)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if installed:
        return installed[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateServer:
    """A PostgreSQL server of the test's own, on a free port with its cluster in a temporary
    directory, that the test may stop (cleanly or as a crash) and start again.

    PostgreSQL refuses to run as root, so under root its programs run as the ``postgres``
    user, who then owns the directory.
    """

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self.directory = Path(tempfile.mkdtemp(prefix="chanlog-pg-"))
        self.port = _free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.cluster), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def cluster(self) -> Path:
        """The data directory."""
        return self.directory / "cluster"

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(
            [*self._as, str(self.programs / program), *arguments],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        """Start it (same port, same cluster) and wait until it accepts connections."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        log = str(self.directory / "server.log")
        self._run("pg_ctl", "start", "-w", "-D", str(self.cluster), "-o", options, "-l", log)

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (sessions are told and closed, then a clean shutdown) or
        ``immediate`` (every process quits at once, as in a crash; recovery runs at the next
        start). Waits until it is gone."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.cluster), "-m", mode)

    def copy_cluster(self, to: str) -> None:
        """Copy the (stopped) cluster aside, owner and modes kept: a cold backup."""
        subprocess.run(
            ["cp", "-a", str(self.cluster), str(self.directory / to)], check=True, timeout=60
        )

    def restore_cluster(self, copy: str) -> None:
        """Put a copy made by :meth:`copy_cluster` back in place of the (stopped) cluster:
        the server comes back without what was committed since (a restored backup, or a
        failover to a replica that was behind)."""
        shutil.rmtree(self.cluster)
        subprocess.run(
            ["cp", "-a", str(self.directory / copy), str(self.cluster)], check=True, timeout=60
        )

    def remove(self) -> None:
        """Stop it if it runs and delete its directory."""
        subprocess.run(
            [*self._as, str(self.programs / "pg_ctl"), "stop", "-D", str(self.cluster)],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres(postgres_dsn: str) -> Iterator[PrivateServer]:
    """A started server of this test's own (needs PostgreSQL's server programs)."""
    del postgres_dsn  # the shared server answering says PostgreSQL is meant to be tested here
    programs = _server_programs()
    if programs is None or not (programs / "initdb").exists():
        _unavailable(
            f"PostgreSQL's server programs (initdb, pg_ctl) are not installed "
            f"(set {BINDIR_VARIABLE} to their directory)"
        )
    server = PrivateServer(programs)
    try:
        server.start()
        yield server
    finally:
        server.remove()
