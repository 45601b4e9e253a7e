"""chanlog-postgres: a chanlog storage backend on PostgreSQL (psycopg 3).

Several processes and machines append to one log; offsets stay dense and in commit order, and
subscribers in other processes are woken by LISTEN/NOTIFY. Select it in chanlog.toml::

    [backend]
    name = "postgres"
    dsn = "postgresql://user@127.0.0.1:5432/dbname"
    schema = "chanlog"

or build it directly: ``EventStore(PostgresBackend(dsn=..., schema=...))``.

The names below are imported on first use, so that the plugin module the entry point loads
(:mod:`chanlog_postgres.plugin`) does not import psycopg with this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chanlog_postgres.backend import DEFAULT_SCHEMA, READ_CHUNK, PostgresBackend, drop_schema
    from chanlog_postgres.schema import SCHEMA_VERSION

__all__ = ["DEFAULT_SCHEMA", "READ_CHUNK", "SCHEMA_VERSION", "PostgresBackend", "drop_schema"]

_HOME = {
    "DEFAULT_SCHEMA": "chanlog_postgres.backend",
    "READ_CHUNK": "chanlog_postgres.backend",
    "PostgresBackend": "chanlog_postgres.backend",
    "drop_schema": "chanlog_postgres.backend",
    "SCHEMA_VERSION": "chanlog_postgres.schema",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'chanlog_postgres' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value
