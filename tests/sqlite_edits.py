"""Editing and inspecting a chanlog SQLite file behind the backend's back, checking it is
refused untouched, and upgrading it from several connections at once: shared by the sqlite
backend's test modules."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import upgrade
from chanlog.errors import StorageError


def edit_database(path: Path, *statements: str) -> None:
    """Run ``statements`` on the file at ``path`` with plain sqlite3 and commit."""
    connection = sqlite3.connect(path)
    try:
        for statement in statements:
            connection.execute(statement)
        connection.commit()
    finally:
        connection.close()


def assert_refused_untouched(path: Path, match: str, *, read_only: bool = False) -> None:
    """Opening ``path`` (``read_only`` or not) raises a StorageError matching ``match`` and
    changes neither the file nor the set of files beside it."""
    before = path.read_bytes()
    siblings = sorted(os.listdir(path.parent))
    with pytest.raises(StorageError, match=match):
        SqliteBackend(path, read_only=read_only)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == siblings


def scalar(path: Path, sql: str) -> object:
    """The first column of the first row ``sql`` returns from the file at ``path``."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchone()[0]
    finally:
        connection.close()


def table_names(path: Path) -> set[str]:
    """The tables of the file at ``path``."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}
    finally:
        connection.close()


def upgrade_at_once(path: Path, openers: int) -> list[bool]:
    """Run :func:`~chanlog.backends.sqlite_schema.upgrade` on ``openers`` connections
    released together; what each returned, sorted."""
    barrier = threading.Barrier(openers)
    outcomes: list[bool] = []

    def open_and_upgrade() -> None:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            barrier.wait()
            outcomes.append(upgrade(connection, path))
        finally:
            connection.close()

    threads = [threading.Thread(target=open_and_upgrade) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)
