"""The ``meta`` table: facts about a log recorded after its schema was created (ADR 0031 of
chanlog: the serializer its payloads are written with).

The table is not part of the layout version (``schema_version``): it is created by the first
writer that has something to record, with ``CREATE TABLE IF NOT EXISTS``, so a log created
before it existed keeps working, and a reader treats a missing table as nothing recorded.
"""

from __future__ import annotations

from typing import Any

import psycopg

from chanlog_postgres.schema import quoted

__all__ = ["SERIALIZER", "meta_value", "record_meta"]

SERIALIZER = "serializer"
"""The key naming the serializer the log's payloads are written with."""


def meta_value(connection: psycopg.Connection[Any], schema: str, key: str) -> str | None:
    """The value of ``key``, or ``None`` when the log records none (or has no ``meta``
    table yet)."""
    table = f"{quoted(schema)}.meta"
    exists = connection.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = connection.execute(f"SELECT value FROM {table} WHERE key = %s", (key,)).fetchone()
    return None if row is None else str(row[0])


def record_meta(connection: psycopg.Connection[Any], schema: str, key: str, value: str) -> str:
    """Store ``key`` = ``value`` unless the log records ``key`` already; return the value
    stored now. Run inside a transaction: the transaction-level advisory lock that schema
    creation takes serializes the processes that record at once, so the first one wins.

    The insert gives way to a row already there and the value is read back, rather than
    trusting :func:`meta_value` after the wait: a session that looked for the table before
    another created it may still find it missing (PostgreSQL caches that a name resolved to
    nothing until the session next takes a lock on a table), and it would insert a second
    row (seen: several processes opening one new log at once, one of them refused).
    """
    connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("chanlog-schema:" + schema,)
    )
    stored = meta_value(connection, schema, key)
    if stored is not None:
        return stored
    table = f"{quoted(schema)}.meta"
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, value text NOT NULL)"
    )
    connection.execute(
        f"INSERT INTO {table} (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (key, value),
    )
    row = connection.execute(f"SELECT value FROM {table} WHERE key = %s", (key,)).fetchone()
    assert row is not None  # inserted now, or found in the way
    return str(row[0])
