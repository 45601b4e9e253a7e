"""Rows of the ``chanlog_meta`` table that a file gains after it was created (ADR 0031).

``format``, ``schema_version`` and ``stream_index_block`` are written with the file
(:mod:`chanlog.backends.sqlite_schema`). The rows here are added later, by the first writer
that has them to record, so they need no new schema version: a file without one is simply
a file written before chanlog recorded it, and every chanlog that reads ``chanlog_meta``
ignores keys it does not know.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chanlog.errors import StorageError

__all__ = ["SERIALIZER", "meta_value", "record_meta"]

SERIALIZER = "serializer"
"""The key of the row naming the serializer the log's payloads are written with."""

_SELECT = "SELECT value FROM chanlog_meta WHERE key = ?"


def meta_value(connection: sqlite3.Connection, path: Path, key: str) -> str | None:
    """The value of ``key``, or ``None`` when the file has no such row.

    Raises:
        StorageError: the row's value is not text (the file was changed outside chanlog).
    """
    row = connection.execute(_SELECT, (key,)).fetchone()
    if row is None:
        return None
    value = row[0]
    if not isinstance(value, str):
        raise StorageError(
            f"{path}: damaged chanlog database (chanlog_meta {key!r} is {value!r}, not text)"
        )
    return value


def record_meta(connection: sqlite3.Connection, path: Path, key: str, value: str) -> str:
    """Insert ``key`` = ``value`` unless the row exists; return the value now stored. Run
    inside the caller's write transaction, so of two writers the first one wins."""
    connection.execute(
        "INSERT OR IGNORE INTO chanlog_meta (key, value) VALUES (?, ?)", (key, value)
    )
    stored = meta_value(connection, path, key)
    assert stored is not None  # inserted above, in this transaction
    return stored
