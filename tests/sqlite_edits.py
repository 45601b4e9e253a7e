"""Editing a chanlog SQLite file behind the backend's back, and checking it is refused
untouched: shared by the sqlite backend's test modules."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
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


def assert_refused_untouched(path: Path, match: str) -> None:
    """Opening ``path`` raises a StorageError matching ``match`` and changes neither the
    file nor the set of files beside it."""
    before = path.read_bytes()
    siblings = sorted(os.listdir(path.parent))
    with pytest.raises(StorageError, match=match):
        SqliteBackend(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == siblings
