"""A log deleted (or moved) without its side files: a new log is never made among them.
SQLite would take a leftover write-ahead log for the new file's own (bringing the deleted
log back, or making the new file unreadable), and a leftover remembered head would have
every verify of the new log report a cut."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import _left_beside
from chanlog.errors import StorageError
from chanlog.store import EventStore
from chanlog.testing import sample_events


def _refused(path: Path, *names: str) -> None:
    with pytest.raises(StorageError) as refused:
        SqliteBackend(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: no database file, but ")
    assert all(name in message for name in names), message
    assert "remove them to start a new log" in message
    assert not path.exists()  # nothing made among them


def test_a_remembered_head_left_behind_is_named(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(20))
    path.unlink()  # closed cleanly: only node.db-head stays
    assert [side.name for side in tmp_path.iterdir()] == ["node.db-head"]
    _refused(path, "node.db-head")
    (tmp_path / "node.db-head").unlink()
    with EventStore(SqliteBackend(path), projections=[]) as store:  # removed: a new log
        assert len(store) == 0
        store.append_batch(sample_events(5, start=100))
        assert store.verify() == 5


def test_the_write_ahead_log_of_a_killed_writer_is_named(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    kept = tmp_path / "kept"
    kept.mkdir()
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(30))
        # What a writer killed now leaves: its write-ahead log and index, with frames.
        for suffix in ("-wal", "-shm"):
            shutil.copy(f"{path}{suffix}", kept / f"node.db{suffix}")
    for side in tmp_path.glob("node.db*"):
        side.unlink()
    for side in kept.iterdir():
        shutil.move(side, tmp_path / side.name)
    _refused(path, "node.db-wal", "node.db-shm")


def test_side_files_of_a_log_just_created_by_another_process_are_its_own(
    tmp_path: Path,
) -> None:
    # A writer finds the file missing, then another creates it (side files and all) before
    # the writer looks beside it: the log is there, and is opened as it is.
    path = tmp_path / "node.db"
    with EventStore(SqliteBackend(path), projections=[]) as other:
        other.append_batch(sample_events(3))
        assert (tmp_path / "node.db-wal").exists()
        assert _left_beside(path)  # side files, and the log they belong to: no refusal


def test_many_writers_opening_a_new_log_at_once_all_open_it(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_and_append(number: int) -> None:
        barrier.wait()
        try:
            with EventStore(SqliteBackend(path), projections=[]) as store:
                store.append_batch(sample_events(5, start=number * 5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == 40
