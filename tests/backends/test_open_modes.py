"""How backends open: ``read_only`` (never create, never write) and ``create=False`` (a
missing log is an error, not a new one), for the sqlite and memory backends."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from chanlog.backends.capabilities import FileBacked, MayBeReadOnly
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import ConfigError, NotFound, StorageError
from chanlog.records import StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing import sample_events, stored_records
from sqlite_edits import assert_refused_untouched


def _log(path: Path, count: int = 5) -> None:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(count))


# -- sqlite --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [({"read_only": True}, "read_only"), ({"create": False}, "create = false")],
)
def test_a_missing_file_is_refused_and_never_created(
    tmp_path: Path, options: dict[str, Any], reason: str
) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(NotFound, match="no such chanlog database file") as error:
        SqliteBackend(path, **options)
    assert str(path) in str(error.value)
    assert reason in str(error.value)
    assert os.listdir(tmp_path) == []


def test_create_false_opens_an_existing_file_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _log(path)
    with EventStore(SqliteBackend(path, create=False), projections=[]) as store:
        assert store.append_batch(sample_events(2, start=5)) == [5, 6]


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
@pytest.mark.parametrize("read_only", [False, True])
def test_a_path_that_is_no_file_is_refused_at_once(
    tmp_path: Path, kind: str, read_only: bool
) -> None:
    """Reading a named pipe's header would wait for a writer forever; a device or a socket
    is no log either."""
    if kind == "fifo":
        path, said = tmp_path / "log.db", "a named pipe (FIFO)"
        os.mkfifo(path)
    elif kind == "device":
        path, said = Path(os.devnull), "a character device"
    else:
        path, said = tmp_path / "log.db", "a socket"
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(path))  # the socket file stays once it is closed
    with pytest.raises(StorageError) as error:
        SqliteBackend(path, read_only=read_only)
    assert str(error.value) == f"{path}: is {said}, not a chanlog database file"


def test_read_only_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        SqliteBackend(tmp_path, read_only=True)


def test_read_only_refuses_every_write_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _log(path)
    backend = SqliteBackend(path, read_only=True)
    try:
        assert isinstance(backend, MayBeReadOnly)
        assert backend.read_only
        assert isinstance(backend, FileBacked)
        assert backend.path == path
        assert "read_only" in repr(backend)
        with pytest.raises(StorageError, match="opened read-only") as error, backend.write():
            pass
        assert str(path) in str(error.value)
        with pytest.raises(StorageError, match="opened read-only"):
            backend.save_snapshot(StoredSnapshot(1, {}, b"", bytes(32)))
        assert backend.head().length == 5
    finally:
        backend.close()
    assert backend.closed


def test_read_only_connections_cannot_write_even_when_asked_to(tmp_path: Path) -> None:
    # Defence in depth: the pooled readers are opened mode=ro, not just query_only.
    path = tmp_path / "log.db"
    _log(path)
    backend = SqliteBackend(path, read_only=True)
    try:
        with pytest.raises(StorageError, match="cannot sneak"):
            backend._connections.query(  # a test reaching into the pool on purpose
                "sneak a write", "DELETE FROM events", ()
            )
        with backend._connections.reader() as connection:
            assert connection.execute("PRAGMA query_only").fetchone()[0] == 1
    finally:
        backend.close()
    assert SqliteBackend(path, read_only=True).head().length == 5


def test_read_only_sees_commits_made_after_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _log(path, 3)
    reader = SqliteBackend(path, read_only=True)
    writer = SqliteBackend(path)
    try:
        with writer.write() as transaction:
            transaction.append(stored_records(sample_events(2, start=3), transaction.head))
        assert reader.head() == writer.head()
        assert reader.wait(4, 5.0)
    finally:
        writer.close()
        reader.close()


def test_read_only_refuses_a_damaged_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(50))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(StorageError, match="truncated database file"):
        SqliteBackend(path, read_only=True)
    assert sorted(os.listdir(tmp_path)) == before
    assert_refused_untouched(path, "truncated database file")


@pytest.mark.parametrize("option", ["read_only", "create"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_flags_must_be_booleans(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be true or false") as error:
        SqliteBackend(tmp_path / "log.db", **{option: value})  # type: ignore[arg-type]
    assert error.value.key == f"backend.{option}"
    assert os.listdir(tmp_path) == []


def test_unknown_options_list_the_new_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="read_only, create"):
        SqliteBackend(tmp_path / "log.db", colour=1)


# -- memory --------------------------------------------------------------------------------


def test_a_read_only_memory_backend_refuses_writes() -> None:
    backend = MemoryBackend(read_only=True)
    assert isinstance(backend, MayBeReadOnly)
    assert backend.read_only
    assert not MemoryBackend().read_only
    with pytest.raises(StorageError, match="read-only"), backend.write():
        pass
    with pytest.raises(StorageError, match="read-only"):
        backend.save_snapshot(StoredSnapshot(0, {}, b"", bytes(32)))
    assert backend.head().length == 0
    with EventStore(backend, projections=[]) as store, pytest.raises(StorageError):
        store.append(sample_events(1)[0])


@pytest.mark.parametrize("value", ["true", 0, None])
def test_memory_read_only_must_be_a_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="read_only must be true or false"):
        MemoryBackend(read_only=value)  # type: ignore[arg-type]


def test_memory_still_refuses_other_options() -> None:
    with pytest.raises(ConfigError, match="takes no options but read_only") as error:
        MemoryBackend(path="x")
    assert error.value.key == "backend.path"
