"""The head witness (``<database>-head``): its format, atomic replacement, damage, and how the
sqlite backend keeps it (RemembersHead)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from chanlog.backends import files
from chanlog.backends.capabilities import RemembersHead
from chanlog.backends.head_file import HeadFile, decode_head, encode_head
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import IntegrityError, InvalidArgument, StorageError
from chanlog.records import Head
from chanlog.store import EventStore
from chanlog.testing import sample_events

HEAD = Head(1234, bytes(range(32)))


def _witness(path: Path) -> Path:
    return path.with_name(path.name + "-head")


def _log(path: Path, count: int) -> Head:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(count))
        return store.backend.head()


# -- the file -----------------------------------------------------------------------------


def test_the_format_is_four_readable_lines() -> None:
    text = encode_head(HEAD).decode("ascii")
    lines = text.splitlines()
    assert lines[0] == "chanlog-head 1"
    assert lines[1] == "length 1234"
    assert lines[2] == "chain_hash 0x" + bytes(range(32)).hex()
    assert lines[3].startswith("checksum ")
    assert text.endswith("\n")
    assert decode_head(encode_head(HEAD), Path("x")) == HEAD


def test_a_missing_witness_is_none(tmp_path: Path) -> None:
    assert HeadFile(tmp_path / "log.db").read() is None


def test_write_then_read(tmp_path: Path) -> None:
    witness = HeadFile(tmp_path / "log.db")
    assert witness.path == tmp_path / "log.db-head"
    witness.write(HEAD)
    assert witness.read() == HEAD
    witness.write(Head(0, bytes(32)))
    assert witness.read() == Head(0, bytes(32))
    assert sorted(os.listdir(tmp_path)) == ["log.db-head"]  # no temporary file left
    assert "log.db-head" in repr(witness)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda data: b"", "lines and fields"),
        (lambda data: data[:-1], "checksum line"),
        (lambda data: data[:40], "lines and fields"),
        (lambda data: data.replace(b"length 1234", b"length 1235"), "does not match"),
        (lambda data: data.replace(b"length 1234", b"length 01234"), "lines and fields"),
        (lambda data: data.replace(b"chanlog-head 1", b"chanlog-head 2"), "lines and fields"),
        (lambda data: data + b"more\n", "checksum line"),
        (lambda data: data[:-5] + b"zzzz\n", "checksum line"),
        (lambda data: b"\xff" * 300, "lines and fields"),
        (lambda data: data + b"x" * 5000, "larger than"),
    ],
)
def test_a_damaged_witness_is_an_integrity_error_naming_the_file(
    tmp_path: Path, damage: object, match: str
) -> None:
    witness = HeadFile(tmp_path / "log.db")
    witness.write(HEAD)
    witness.path.write_bytes(damage(witness.path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=match) as error:
        witness.read()
    assert str(witness.path) in str(error.value)
    assert "damaged head witness" in str(error.value)


def test_an_unreadable_witness_is_a_storage_error(tmp_path: Path) -> None:
    witness = HeadFile(tmp_path / "log.db")
    witness.path.mkdir()
    with pytest.raises(StorageError, match="cannot read the head witness"):
        witness.read()
    with pytest.raises(StorageError, match="cannot write the head witness"):
        witness.write(HEAD)


def test_a_failed_replace_keeps_the_old_witness_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = HeadFile(tmp_path / "log.db")
    witness.write(HEAD)

    def crash(source: object, target: object) -> None:
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", crash)  # the os module chanlog.backends.files uses
    with pytest.raises(StorageError, match="disk pulled out"):
        witness.write(Head(5, bytes(32)))
    monkeypatch.undo()
    assert witness.read() == HEAD
    assert sorted(os.listdir(tmp_path)) == ["log.db-head"]


def test_the_new_witness_is_fsynced_before_it_replaces_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        calls.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)  # the os module chanlog.backends.files uses
    monkeypatch.setattr(os, "replace", replace)
    HeadFile(tmp_path / "log.db").write(HEAD)
    # The file's data, then the rename, then the directory entry.
    assert calls == ["fsync", "replace", "fsync"]


# -- the sqlite backend keeps it ----------------------------------------------------------


def test_the_sqlite_backend_remembers_heads(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    backend = SqliteBackend(path)
    try:
        assert isinstance(backend, RemembersHead)
        assert backend.remembered_head() is None
        backend.remember_head(HEAD)
        assert backend.remembered_head() == HEAD
        assert _witness(path).read_bytes() == encode_head(HEAD)
        with pytest.raises(InvalidArgument):
            backend.remember_head(Head(-1, bytes(32)))
        with pytest.raises(InvalidArgument):
            backend.remember_head(Head(1, b"short"))
    finally:
        backend.close()


def test_close_remembers_the_head_of_a_log_with_records(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    SqliteBackend(path).close()
    assert not _witness(path).exists()  # an empty log has nothing to witness
    head = _log(path, 40)
    assert HeadFile(path).read() == head
    more = _log(path, 45)  # reopened, extended: the witness follows
    assert more.length == 45
    assert HeadFile(path).read() == more


def test_close_does_not_rewrite_an_unchanged_witness(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _log(path, 3)
    before = _witness(path).stat().st_mtime_ns
    os.utime(_witness(path), ns=(before - 10**9, before - 10**9))
    SqliteBackend(path).close()
    assert _witness(path).stat().st_mtime_ns == before - 10**9


def test_a_cut_tail_keeps_its_evidence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "log.db"
    head = _log(path, 40)
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM events WHERE position >= 30")
    connection.commit()
    connection.close()
    backend = SqliteBackend(path)
    assert backend.head().length == 30
    assert backend.remembered_head() == head
    backend.close()
    assert HeadFile(path).read() == head  # close did not lower it
    assert "does not extend the head its witness remembers" in caplog.text


def test_a_rewritten_tail_of_the_same_length_keeps_its_evidence(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    head = _log(path, 10)
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM events WHERE position >= 8")
    connection.commit()
    connection.close()
    # Appending other events at the cut offsets makes a log as long, with another chain.
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(5, start=100))
        assert len(store) == 13
    assert HeadFile(path).read() == head


def test_a_damaged_witness_is_left_alone_at_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.db"
    _log(path, 5)
    _witness(path).write_bytes(b"garbage")
    backend = SqliteBackend(path)
    with pytest.raises(IntegrityError, match="damaged head witness"):
        backend.remembered_head()
    backend.close()  # closing still works and keeps the evidence
    assert _witness(path).read_bytes() == b"garbage"
    assert "the head was not remembered at close" in caplog.text


def test_a_read_only_backend_never_writes_the_witness(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    head = _log(path, 5)
    _witness(path).unlink()
    reader = SqliteBackend(path, read_only=True)
    assert reader.remembered_head() is None
    with pytest.raises(StorageError, match="read-only"):
        reader.remember_head(head)
    reader.close()
    assert not _witness(path).exists()


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_a_witness_never_remembers_commits_a_power_cut_may_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    # With durability "normal" the last commits are not synced, and a power cut may take
    # them (as documented): the witness is written only once the write-ahead log is synced,
    # or verify would take that loss for records cut from the log.
    from chanlog.backends import sqlite as sqlite_module

    steps: list[str] = []
    synced = files.fsync_file  # what the sqlite backend calls, patched there below
    written = HeadFile.write

    def fsync_file(path: Path) -> None:
        steps.append(f"sync {path.name}")
        synced(path)

    def write(head_file: HeadFile, head: Head) -> None:
        steps.append(f"witness {head.length}")
        written(head_file, head)

    monkeypatch.setattr(sqlite_module, "fsync_file", fsync_file)
    monkeypatch.setattr(HeadFile, "write", write)
    path = tmp_path / "node.db"
    with EventStore(SqliteBackend(path, durability=durability), projections=[]) as store:
        store.append_batch(sample_events(10))
        store.backend.remember_head(store.backend.head())  # type: ignore[attr-defined]
        store.append_batch(sample_events(5, start=10))
    if durability == "full":  # every commit was synced: nothing more to do
        assert steps == ["witness 10", "witness 15"]
    else:
        assert steps == ["sync node.db-wal", "witness 10", "sync node.db-wal", "witness 15"]
