"""chanlog-postgres: a chanlog storage backend on PostgreSQL (psycopg 3).

Several processes and machines append to one log; offsets stay dense and in commit order, and
subscribers in other processes are woken by LISTEN/NOTIFY. Select it in chanlog.toml::

    [backend]
    name = "postgres"
    dsn = "postgresql://user@127.0.0.1:5432/dbname"
    schema = "chanlog"

or build it directly: ``EventStore(PostgresBackend(dsn=..., schema=...))``.
"""

from __future__ import annotations

from chanlog_postgres.backend import DEFAULT_SCHEMA, READ_CHUNK, PostgresBackend, drop_schema
from chanlog_postgres.schema import SCHEMA_VERSION

__all__ = ["DEFAULT_SCHEMA", "READ_CHUNK", "SCHEMA_VERSION", "PostgresBackend", "drop_schema"]
