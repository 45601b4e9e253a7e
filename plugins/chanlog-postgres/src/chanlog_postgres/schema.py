"""The tables chanlog keeps in its PostgreSQL schema, their version, and how they are created,
checked, upgraded and dropped (ADRs 0013 and 0027).

One log lives in one PostgreSQL schema (``chanlog`` by default), so several logs can share a
database. Tables:

- ``schema_version``: one row, the layout version (:data:`SCHEMA_VERSION`).
- ``head``: one row, the log's length and last chain hash. Writers lock it
  (``SELECT ... FOR UPDATE``): it is the single-writer lock (ADR 0012).
- ``events``: one row per record, keyed by its offset; ``event_id`` is unique.
- ``streams``: (entity stream, offset) pairs, the index behind reads by entity.
- ``stream_versions``: the number of records per stream, for ``expected_version``.
- ``snapshots``: projection states by offset.
- ``consumers`` and ``parked_records`` (layout version 2): durable consumers' positions,
  leases and parked records (:mod:`chanlog_postgres.consumers`).

A schema of layout version 1 is upgraded in place when a writable handle opens it: the
consumer tables are created, empty, under the same advisory lock that creates a schema. A
read-only handle reads it as it is (it then keeps no consumers).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from chanlog.errors import ConfigError, NotFound, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog_postgres.connection import describe_error

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "TABLES_V1",
    "WRITE_PRIVILEGES",
    "check_schema_name",
    "ensure_schema",
    "notify_channel",
    "remove_schema",
]

SCHEMA_VERSION = 2
"""The layout version this package writes (and reads, with version 1)."""

TABLES_V1 = ("schema_version", "head", "events", "streams", "stream_versions", "snapshots")
"""The tables of a schema of layout version 1."""

TABLES = (*TABLES_V1, "consumers", "parked_records")
"""Every table of a chanlog schema of :data:`SCHEMA_VERSION`."""

# Lower-case identifiers only: they need no quoting rules beyond double quotes, so schema names
# can be spliced into SQL safely, and 50 characters leave room for the NOTIFY channel name
# within PostgreSQL's 63-byte identifier limit.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,49}")

_DDL = """
CREATE TABLE {s}.schema_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version integer NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    length bigint NOT NULL CHECK (length >= 0),
    chain_hash bytea NOT NULL CHECK (octet_length(chain_hash) = 32)
);
CREATE TABLE {s}.events (
    position bigint PRIMARY KEY CHECK (position >= 0),
    event_id bytea NOT NULL UNIQUE CHECK (octet_length(event_id) = 32),
    event_type text NOT NULL,
    streams text[] NOT NULL,
    payload bytea NOT NULL,
    chain_hash bytea NOT NULL CHECK (octet_length(chain_hash) = 32)
);
CREATE TABLE {s}.streams (
    stream text NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (stream, position)
);
CREATE TABLE {s}.stream_versions (
    stream text PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);
CREATE TABLE {s}.snapshots (
    position bigint PRIMARY KEY CHECK (position >= 0),
    versions jsonb NOT NULL,
    data bytea NOT NULL,
    snapshot_hash bytea NOT NULL
);
"""

# Times are unix seconds of the server's clock; the parked count is counted, not stored.
_CONSUMER_DDL = """
CREATE TABLE {s}.consumers (
    name text PRIMARY KEY,
    position bigint NOT NULL CHECK (position >= 0),
    subjects text[] NOT NULL,
    handled bigint NOT NULL DEFAULT 0,
    lease_holder text,
    lease_expires_at double precision,
    last_error text,
    updated_at double precision NOT NULL
);
CREATE TABLE {s}.parked_records (
    consumer text NOT NULL REFERENCES {s}.consumers (name) ON DELETE CASCADE,
    position bigint NOT NULL CHECK (position >= 0),
    event_id text NOT NULL,
    event_type text NOT NULL,
    attempts integer NOT NULL,
    error text NOT NULL,
    parked_at double precision NOT NULL,
    replay boolean NOT NULL DEFAULT false,
    PRIMARY KEY (consumer, position)
);
"""


def check_schema_name(schema: object) -> str:
    """Return ``schema`` if it is a usable schema name.

    Raises:
        ConfigError: not a lower-case identifier of at most 50 characters, or a name
            PostgreSQL reserves (``pg_*``, ``information_schema``).
    """
    if not isinstance(schema, str) or _SCHEMA_NAME.fullmatch(schema) is None:
        raise ConfigError(
            f"postgres backend: schema must be a lower-case identifier ([a-z_][a-z0-9_]*, at "
            f"most 50 characters), got {schema!r}",
            key="backend.schema",
        )
    if schema.startswith("pg_") or schema == "information_schema":
        raise ConfigError(
            f"postgres backend: schema {schema!r} is reserved by PostgreSQL",
            key="backend.schema",
        )
    return schema


def quoted(schema: str) -> str:
    """The schema as a quoted SQL identifier (safe: :func:`check_schema_name` admits only
    ``[a-z0-9_]``)."""
    return f'"{schema}"'


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel announcing appends to the log in ``schema``."""
    return f"chanlog.{schema}"


def ensure_schema(
    connection: psycopg.Connection[Any],
    schema: str,
    *,
    create: bool = True,
    read_only: bool = False,
) -> bool:
    """Create the chanlog tables in ``schema`` unless they exist (and ``create`` allows it);
    check them if they do, and upgrade a schema of an older layout in place (unless
    ``read_only``: a read-only handle reads layout version 1 as it is).

    Concurrent callers (several processes opening one log at once) are serialized by a
    transaction-level advisory lock, so exactly one creates (or upgrades) the tables.
    Returns whether this call created them.

    The database's encoding is checked first, before anything is created or written, from
    what the server announced when the session started (no round trip): it is fixed when the
    database is created, so once per open is enough.

    Raises:
        NotFound: the schema holds no log and ``create`` is False.
        StorageError: the database's encoding is not UTF8; the schema holds tables that are
            not chanlog's, a version this package does not read, or misses some of its
            tables; or the server refused the DDL.
    """
    _require_utf8(connection)
    try:
        with connection.transaction():
            if not read_only:
                _require_read_write_session(connection, schema)
            connection.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                ("chanlog-schema:" + schema,),
            )
            tables = _tables(connection, schema)
            if "schema_version" in tables:
                if not read_only:
                    _require_write_privileges(connection, schema)
                _check_existing(connection, schema, tables, read_only=read_only)
                return False
            if not tables and not create:
                raise NotFound(
                    f"postgres backend: schema {schema!r} holds no chanlog log (opened with "
                    "read_only or create = false, which never create one)"
                )
            if tables:
                raise StorageError(
                    f"postgres backend: schema {schema!r} already holds tables that are not a "
                    f"chanlog log ({', '.join(sorted(tables)[:5])}); choose another schema"
                )
            _create(connection, schema)
            return True
    except psycopg.Error as exc:
        raise StorageError(
            f"postgres backend: cannot prepare schema {schema!r}: {describe_error(exc)}"
        ) from exc


def _tables(connection: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = connection.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        (schema,),
    ).fetchall()
    return {str(row[0]) for row in rows}


def _check_existing(
    connection: psycopg.Connection[Any], schema: str, tables: set[str], *, read_only: bool
) -> None:
    rows = connection.execute(
        f"SELECT version FROM {quoted(schema)}.schema_version ORDER BY version"
    ).fetchall()
    if len(rows) != 1:
        found = f": versions {', '.join(str(row[0]) for row in rows)}" if rows else ""
        raise StorageError(
            f"postgres backend: schema {schema!r} is damaged (schema_version has "
            f"{len(rows) or 'no'} row{'s' if len(rows) != 1 else ''}{found}; one was expected, "
            "so which layout the schema has is unknown)"
        )
    version = int(rows[0][0])
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"postgres backend: schema {schema!r} has layout version {version}, written by a "
            f"newer chanlog-postgres; this one reads version {SCHEMA_VERSION}. Upgrade "
            "chanlog-postgres."
        )
    if version < 1:
        raise StorageError(
            f"postgres backend: schema {schema!r} has layout version {version}; this "
            f"chanlog-postgres reads version {SCHEMA_VERSION} and knows no migration from it"
        )
    missing = [table for table in (TABLES_V1 if version == 1 else TABLES) if table not in tables]
    if missing:
        raise StorageError(
            f"postgres backend: schema {schema!r} is damaged (missing tables: {', '.join(missing)})"
        )
    newer = [table for table in TABLES if table not in TABLES_V1 and table in tables]
    if version == 1 and newer:
        raise StorageError(
            f"postgres backend: schema {schema!r} is damaged (layout version 1, but it has the "
            f"tables {', '.join(newer)} of version 2): it was changed outside chanlog, half-way "
            "to another version; restore it from a backup, or finish or undo the change by hand"
        )
    if version == 1 and not read_only:
        _upgrade_from_v1(connection, schema)


WRITE_PRIVILEGES = {
    "schema_version": ("SELECT",),
    "head": ("SELECT", "UPDATE"),
    "events": ("SELECT", "INSERT"),
    "streams": ("SELECT", "INSERT"),
    "stream_versions": ("SELECT", "INSERT", "UPDATE"),
    "snapshots": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "meta": ("SELECT",),
}
"""What a writable handle needs on each table of the log (ADR 0040 of chanlog): it reads
the layout version when it opens; appends lock and move the head, insert records and their
stream entries, and count streams; the store takes snapshots and prunes them, and reads the
serializer the log records (``meta``, where the log has one). Nothing more: a server that
denies UPDATE and DELETE on ``events`` keeps the log append-only whoever connects. The
consumer tables are the bus's: a role that runs no consumer needs no right on them."""


def _require_utf8(connection: psycopg.Connection[Any]) -> None:
    """Refuse a database whose server encoding is not UTF8 (ADR 0071): in LATIN1 and the
    like, text outside it is refused at the append; in SQL_ASCII, nothing is checked or
    converted and every text is read back as bytes."""
    encoding = connection.info.parameter_status("server_encoding")
    if encoding != "UTF8":
        raise StorageError(
            f"postgres backend: database {connection.info.dbname!r} has server encoding "
            f"{encoding}, and chanlog needs UTF8 (in another encoding the text an event holds "
            "is refused, or stored other than it was appended): create the database with "
            "ENCODING 'UTF8' (TEMPLATE template0) and point the dsn at it; move a log already "
            "there with pg_dump --schema"
        )


def _require_read_write_session(connection: psycopg.Connection[Any], schema: str) -> None:
    """Refuse, when it opens, a writable handle whose sessions the server keeps read-only: a
    standby (in recovery), or ``default_transaction_read_only`` set for the role or the
    database. Otherwise the first append would fail (or, for a new log, the DDL)."""
    row = connection.execute(
        "SELECT current_user, current_setting('transaction_read_only'), pg_is_in_recovery()"
    ).fetchone()
    assert row is not None
    role, read_only, standby = row
    if read_only == "on":
        why = (
            "the server is a standby, in recovery: point the dsn at the primary"
            if standby
            else f"default_transaction_read_only is on for role {role!r} or this database"
        )
        raise StorageError(
            f"postgres backend: the server keeps this session read-only, so the log in schema "
            f"{schema!r} cannot be written ({why}); or open the log read-only "
            "(read_only = true)"
        )


def _require_write_privileges(connection: psycopg.Connection[Any], schema: str) -> None:
    """Refuse, when it opens, a writable handle whose role may not append: otherwise the
    first append would fail on the server's ``permission denied``."""
    needed = [(table, right) for table, rights in WRITE_PRIVILEGES.items() for right in rights]
    lacking = connection.execute(
        "SELECT current_user, needed.p || ' on ' || needed.t"
        " FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS needed(t, p, n)"
        " CROSS JOIN LATERAL to_regclass(%s || '.' || needed.t) AS found(relation)"
        # A missing table is the damage check's to report, after this one.
        " WHERE found.relation IS NOT NULL AND NOT has_table_privilege(found.relation, needed.p)"
        " ORDER BY needed.n",
        ([table for table, _ in needed], [right for _, right in needed], quoted(schema)),
    ).fetchall()
    if lacking:
        raise StorageError(
            f"postgres backend: role {lacking[0][0]!r} may not write the log in schema "
            f"{schema!r}: it lacks {', '.join(row[1] for row in lacking)}; GRANT them, or open "
            "the log read-only (read_only = true)"
        )


def _upgrade_from_v1(connection: psycopg.Connection[Any], schema: str) -> None:
    """Layout version 1 -> 2, in :func:`ensure_schema`'s transaction: the consumer tables,
    empty (no row of version 1 changes)."""
    name = quoted(schema)
    connection.execute(_CONSUMER_DDL.format(s=name).encode())
    connection.execute(f"UPDATE {name}.schema_version SET version = %s", (SCHEMA_VERSION,))


def _create(connection: psycopg.Connection[Any], schema: str) -> None:
    name = quoted(schema)
    connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
    connection.execute((_DDL + _CONSUMER_DDL).format(s=name).encode())
    connection.execute(
        f"INSERT INTO {name}.head (length, chain_hash) VALUES (0, %s)", (GENESIS_CHAIN_HASH,)
    )
    connection.execute(
        f"INSERT INTO {name}.schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
    )


def remove_schema(connection: psycopg.Connection[Any], schema: str) -> bool:
    """Drop ``schema`` and everything in it, if it is a chanlog log; return whether it existed.

    A schema that exists but holds no ``schema_version`` table is refused, so a mistyped
    name cannot drop somebody else's tables.

    Raises:
        StorageError: the schema is not a chanlog log, or the server refused.
    """
    check_schema_name(schema)
    try:
        with connection.transaction():
            exists = connection.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if exists is None:
                return False
            tables = _tables(connection, schema)
            if tables and "schema_version" not in tables:
                raise StorageError(
                    f"postgres backend: schema {schema!r} is not a chanlog log; refusing to drop it"
                )
            connection.execute(f"DROP SCHEMA {quoted(schema)} CASCADE")
            return True
    except psycopg.Error as exc:
        raise StorageError(
            f"postgres backend: cannot drop schema {schema!r}: {describe_error(exc)}"
        ) from exc
