"""Connecting to PostgreSQL: DSN checks, bounded connection attempts, errors naming the server.

Every connection chanlog-postgres opens has a connect timeout and TCP keepalives, so neither a
server that is down nor one that vanished mid-query makes a caller wait forever.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import conninfo

from chanlog.errors import ConfigError, StorageError

__all__ = [
    "KEEPALIVES",
    "ServerAddress",
    "connect",
    "describe_error",
    "parse_dsn",
    "read_committed",
    "server_keepalives",
    "storage_error",
]

KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""TCP keepalive settings added to a DSN that sets none: a server that disappears without
closing the socket is noticed within about 25 seconds instead of the kernel's two hours."""


class ServerAddress:
    """Where a DSN points, for error messages (never includes the password).

    Attributes:
        host: the host name, address or socket directory (libpq's default when unset).
        port: the port (libpq's default when unset).
        dbname: the database name, when the DSN names one.
    """

    __slots__ = ("dbname", "host", "port")

    def __init__(self, params: dict[str, str]) -> None:
        self.host = params.get("host") or os.environ.get("PGHOST") or "localhost"
        self.port = params.get("port") or os.environ.get("PGPORT") or "5432"
        self.dbname = params.get("dbname") or os.environ.get("PGDATABASE")

    def __str__(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"{where}/{self.dbname}" if self.dbname else where


def parse_dsn(dsn: object) -> tuple[str, ServerAddress]:
    """Check a DSN (``postgresql://...`` URL or ``key=value`` string) and return it with
    keepalives added (unless it sets its own), ``client_encoding`` set to UTF8, and the
    server it names.

    The client encoding is set whatever the DSN, ``PGCLIENTENCODING``, the database's or the
    role's default say (the connection's own setting outranks all of them): in another one
    psycopg cannot send every character an event may hold, or reads text as bytes (ADR 0071).

    Raises:
        ConfigError: ``dsn`` is missing, not a string, holds a NUL, or not parseable by
            libpq.
    """
    if dsn is None:
        raise ConfigError(
            "postgres backend: the option 'dsn' is required "
            '(e.g. dsn = "postgresql://user@127.0.0.1:5432/dbname")',
            key="backend.dsn",
        )
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigError(
            f"postgres backend: dsn must be a non-empty string, got {type(dsn).__name__}",
            key="backend.dsn",
        )
    if "\x00" in dsn:
        # libpq reads a connection string up to its first NUL, dropping the rest unsaid.
        raise ConfigError(
            f"postgres backend: dsn holds a NUL character at {dsn.index(chr(0))}, which no "
            "connection string may hold",
            key="backend.dsn",
        )
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(
            f"postgres backend: dsn is not a valid connection string: {_first_line(exc)}",
            key="backend.dsn",
        ) from exc
    text_params = {key: str(value) for key, value in params.items() if value is not None}
    extra: dict[str, str | int] = {
        key: value for key, value in KEEPALIVES.items() if key not in text_params
    }
    extra["client_encoding"] = "UTF8"
    return conninfo.make_conninfo(dsn, **extra), ServerAddress(text_params)


_SERVER_KEEPALIVES = {
    "keepalives_idle": "tcp_keepalives_idle",
    "keepalives_interval": "tcp_keepalives_interval",
    "keepalives_count": "tcp_keepalives_count",
}


def server_keepalives(dsn: str) -> str | None:
    """The statement that gives the server's end of a session the keepalives the client's end
    has (those of a DSN :func:`parse_dsn` checked), or ``None`` when the DSN turns them off.

    The client's keepalives notice a server that vanished; these make the server notice a
    client that vanished (its host lost power, the network between them cut) within the
    same bound instead of the operating system's two hours and more. Until it does, the
    session's transaction stays open: a writer's holds the ``head`` row lock, so every
    other process's appends fail after ``lock_timeout`` for as long as it lasts (ADR 0068).
    """
    params = conninfo.conninfo_to_dict(dsn)
    if str(params.get("keepalives", "1")) == "0":
        return None
    # Digits only (libpq refuses anything else at connect, naming it): spliced in safely.
    settings = [
        f"set_config('{server}', '{value}', false)"
        for client, server in _SERVER_KEEPALIVES.items()
        if (value := str(params.get(client, "")).strip()).isdigit()
    ]
    return "SELECT " + ", ".join(settings) if settings else None


def connect(
    dsn: str, server: ServerAddress, *, connect_timeout: float, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open one autocommit connection, waiting at most ``connect_timeout`` seconds per
    address the DSN resolves to.

    Raises:
        StorageError: the server cannot be reached or refuses the connection; the message
            names the host, port and database.
    """
    try:
        connection = psycopg.connect(
            dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout)), **kwargs
        )
    except psycopg.Error as exc:
        raise StorageError(
            f"postgres backend: cannot connect to {server}: {describe_error(exc)}"
        ) from exc
    try:
        read_committed(connection)
    except psycopg.Error as exc:
        connection.close()
        raise StorageError(
            f"postgres backend: cannot set up a session on {server}: {describe_error(exc)}"
        ) from exc
    return connection


def read_committed(connection: psycopg.Connection[Any]) -> None:
    """Make READ COMMITTED the session's isolation, whatever the database or role default.

    chanlog's locks need it: a writer that waited for the head row, or an opener that
    waited for the schema lock, must then see what was committed meanwhile. Under a default
    of REPEATABLE READ or SERIALIZABLE it would fail instead ("could not serialize access").
    """
    connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")


def storage_error(
    where: str, action: str, exc: psycopg.Error, *, held: str, lock_timeout: float
) -> StorageError:
    """The :class:`StorageError` for a failed ``action``: a lock another process held past
    ``lock_timeout`` (``held`` names it), or the server's own one-line reason."""
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return StorageError(
            f"{where}: cannot {action}: another process held {held} for more than "
            f"lock_timeout ({lock_timeout:g} s)"
        )
    return StorageError(f"{where}: cannot {action}: {describe_error(exc)}")


def describe_error(exc: BaseException) -> str:
    """A one-line description of a psycopg error (libpq messages span several lines)."""
    return _first_line(exc) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:2])
