"""A log in a directory its reader may not write to (ADR 0039): a backup on read-only media,
or a node's log read by an auditor without write access. SQLite cannot create the ``-shm``
index there, so a read-only backend reads the main file as it is when no write-ahead log is
beside it, and refuses, saying what to do, when one holds changes the file lacks. A writer
there, or on a file it may not write, is refused when it opens, naming what it may not
write, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlog.backends import sqlite_options
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_options import unreadable_log
from chanlog.errors import StorageError
from chanlog.store import EventStore
from chanlog.testing import sample_events

CHILD = Path(__file__).with_name("sealed_reader_child.py")
CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")
AS_ROOT = os.geteuid() == 0

WITHOUT_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
"""Root without the capabilities that let it write where the permissions say no."""

READ_ONLY_MOUNT = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
]
"""The command after it, with the directory that follows mounted read-only for it alone."""


class Sealed:
    """A directory whose log the reader may read but where it may create no file: made
    read-only (``chmod 555``; as root, the reader runs without the capabilities that override
    permissions), or a read-only mount of it in the reader's own mount namespace (root only).
    """

    def __init__(self, directory: Path, how: str) -> None:
        self.directory = directory
        self.how = how

    def seal(self) -> None:
        if self.how == "directory":
            self.directory.chmod(0o555)

    def unseal(self) -> None:
        self.directory.chmod(0o755)

    def _prefix(self) -> list[str]:
        if self.how == "file system":
            return [*READ_ONLY_MOUNT, str(self.directory)]
        return WITHOUT_OVERRIDES if AS_ROOT else []

    def reader(self, path: Path) -> subprocess.Popen[str]:
        """The reader child on ``path``, unable to create a file beside it."""
        return subprocess.Popen(
            [*self._prefix(), sys.executable, str(CHILD), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """``chanlog ARGUMENTS``, unable to create a file in the directory."""
        return subprocess.run(
            [*self._prefix(), str(CHANLOG), *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(params=["directory", "file system"])
def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sealed]:
    if request.param == "file system" and not AS_ROOT:
        pytest.skip("a private read-only mount needs root (CI runs as root)")
    directory = tmp_path / "sealed"
    directory.mkdir()
    try:
        yield Sealed(directory, request.param)
    finally:
        directory.chmod(0o755)


def _append(path: Path, count: int, start: int = 0) -> list[str]:
    events = sample_events(count, start=start)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(events)
    return [event.event_id for event in events]


def _ask(reader: subprocess.Popen[str]) -> dict[str, Any]:
    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write("read\n")
    reader.stdin.flush()
    answer: dict[str, Any] = json.loads(reader.stdout.readline())
    return answer


def _quit(reader: subprocess.Popen[str]) -> None:
    _, errors = reader.communicate("quit\n", timeout=60)
    assert reader.returncode == 0, errors


def test_a_log_without_a_write_ahead_log_is_read_as_it_is(sealed: Sealed) -> None:
    path = sealed.directory / "node.db"
    ids = _append(path, 40)
    files = sorted(os.listdir(sealed.directory))
    sealed.seal()
    reader = sealed.reader(path)
    try:
        assert _ask(reader) == {"length": 40, "verified": 40, "ids": ids}
    finally:
        _quit(reader)
    assert sorted(os.listdir(sealed.directory)) == files  # no -shm, no -wal left behind
    done = sealed.cli("--db", str(path), "verify")
    assert done.returncode == 0, done.stderr
    assert "40" in done.stdout


def test_the_reader_sees_what_writers_commit_after_it_opened(sealed: Sealed) -> None:
    path = sealed.directory / "node.db"
    ids = _append(path, 10)
    sealed.seal()
    reader = sealed.reader(path)
    try:
        assert _ask(reader)["length"] == 10
        # A writer that came and went: its commits are in the main file now.
        sealed.unseal()
        ids += _append(path, 5, start=10)
        sealed.seal()
        assert _ask(reader) == {"length": 15, "verified": 15, "ids": ids}
        # A writer still open: its commits are in its write-ahead log, which the reader
        # reads through the index the writer made.
        sealed.unseal()
        events = sample_events(5, start=15)
        with EventStore(SqliteBackend(path), projections=[]) as writer:
            writer.append_batch(events)
            sealed.seal()
            assert _ask(reader) == {
                "length": 20,
                "verified": 20,
                "ids": ids + [event.event_id for event in events],
            }
            sealed.unseal()
    finally:
        _quit(reader)


def test_a_write_ahead_log_it_cannot_index_is_refused_saying_what_to_do(sealed: Sealed) -> None:
    live = sealed.directory / "live.db"
    path = sealed.directory / "node.db"
    with EventStore(SqliteBackend(live), projections=[]) as writer:
        writer.append_batch(sample_events(5))
        # What a crash leaves: the changes only in the write-ahead log, no index beside it.
        shutil.copyfile(live, path)
        shutil.copyfile(f"{live}-wal", f"{path}-wal")
    sealed.seal()
    reader = sealed.reader(path)
    said, errors = reader.communicate("quit\n", timeout=60)
    assert reader.returncode == 0, errors
    message = json.loads(said)["error"]
    assert message.startswith(f"{path}: cannot be read here")
    assert "node.db-wal" in message
    assert "open it once where it may be written" in message
    done = sealed.cli("--db", str(path), "verify")
    assert done.returncode == 5
    assert "cannot be read here" in done.stderr


def test_a_writer_where_it_may_not_create_files_is_refused_when_it_opens(sealed: Sealed) -> None:
    path = sealed.directory / "node.db"
    _append(path, 3)
    files = sorted(os.listdir(sealed.directory))
    sealed.seal()
    done = sealed.cli("--db", str(path), "generate", "--channels", "1", "--turns", "1")
    assert done.returncode == 5
    assert f"{path}: cannot open for writing: this process may not write the directory " in (
        done.stderr
    )
    # Its mode and owner allow it on a read-only mount: the message must say what does not.
    assert ("on a read-only file system" in done.stderr) == (sealed.how == "file system")
    assert sorted(os.listdir(sealed.directory)) == files


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_writer_is_refused_a_file_it_may_not_write_naming_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "node.db"
    ids = _append(path, 3)
    read_only = Path(f"{path}{suffix}")
    read_only.touch()  # a side file left by an earlier process, as read-only as the log was
    read_only.chmod(0o444)
    files = sorted(os.listdir(tmp_path))
    done = subprocess.run(
        [*(WITHOUT_OVERRIDES if AS_ROOT else []), str(CHANLOG), "--db", str(path), "generate"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 5
    assert f"may not write {read_only} (mode 0444, owner uid {os.geteuid()})" in done.stderr
    assert "give it write access, or open the log read-only" in done.stderr
    assert sorted(os.listdir(tmp_path)) == files
    read_only.chmod(0o644)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert [record.event_id for record in store.read_from(0)] == ids


# -- the same decisions in this process, where SQLite's refusal is played (the children above
# -- meet the real one, but their coverage is not measured) --------------------------------


def _refusal(name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorname = name  # what SQLite sets on the errors it raises
    return error


@pytest.fixture
def no_index_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read-only connection's first read refused as where no ``-shm`` may be made."""

    def refuse(connection: sqlite3.Connection) -> None:
        raise _refusal("SQLITE_READONLY_DIRECTORY")

    monkeypatch.setattr(sqlite_options, "_first_read", refuse)


@pytest.mark.usefixtures("no_index_here")
def test_in_process_the_file_is_read_as_it_is_one_connection_per_read(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    ids = _append(path, 7)
    backend = SqliteBackend(path, read_only=True)
    with EventStore(backend, projections=[], read_only=True) as store:
        assert [record.event_id for record in store.read_from(0)] == ids
        assert store.verify() == 7
        assert backend._connections.idle_readers() == 0  # never pooled
        path.unlink()  # gone: the next read says so
        with pytest.raises(StorageError, match=f"{path}: cannot open: unable to open"):
            backend.head()


@pytest.mark.usefixtures("no_index_here")
def test_in_process_a_write_ahead_log_with_changes_is_refused(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    path = tmp_path / "node.db"
    with EventStore(SqliteBackend(live), projections=[]) as writer:
        writer.append_batch(sample_events(3))
        shutil.copyfile(live, path)
        shutil.copyfile(f"{live}-wal", f"{path}-wal")
    with pytest.raises(StorageError, match=f"{path}: cannot be read here: SQLite must create"):
        SqliteBackend(path, read_only=True)


@pytest.mark.parametrize(
    ("name", "log", "refused"),
    [
        ("SQLITE_READONLY_DIRECTORY", b"frames", True),
        ("SQLITE_CANTOPEN", b"frames", True),
        ("SQLITE_CANTOPEN", b"", False),  # an empty log holds nothing the file lacks
        ("SQLITE_CANTOPEN", None, False),  # no log: the file is the whole database
        ("SQLITE_CORRUPT", b"frames", False),  # another failure: not this error's to say
    ],
)
def test_which_refusals_mean_an_unreadable_log(
    tmp_path: Path, name: str, log: bytes | None, refused: bool
) -> None:
    path = tmp_path / "node.db"
    if log is not None:
        Path(f"{path}-wal").write_bytes(log)
    error = unreadable_log(path, _refusal(name))
    assert (error is not None) == refused


def test_in_process_a_writer_is_refused_what_the_kernel_says_it_may_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "node.db"
    _append(path, 2)
    Path(f"{path}-shm").touch()
    denied = {tmp_path, Path(f"{path}-shm"), Path(f"{path}-wal")}  # the -wal does not exist
    real_access = os.access
    monkeypatch.setattr(
        os,  # the os module chanlog.backends.files uses
        "access",
        lambda where, mode: Path(where) not in denied and real_access(where, mode),
    )
    with pytest.raises(StorageError) as error:
        SqliteBackend(path)
    mode = f"{Path(f'{path}-shm').stat().st_mode & 0o777:04o}"
    assert str(error.value) == (
        f"{path}: cannot open for writing: this process may not write the directory "
        f"{tmp_path} (mode {tmp_path.stat().st_mode & 0o777:04o}, owner uid {os.geteuid()}); "
        f"{path}-shm (mode {mode}, owner uid {os.geteuid()}); give it write access, or open "
        "the log read-only (read_only = true) to read it"
    )
    SqliteBackend(path, read_only=True).close()  # a reader needs none of it
