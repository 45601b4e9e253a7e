"""The write-ahead log grown ahead of the writer's commits (ADR 0037): when it reserves, how
far, that a failed reservation changes nothing else, and that a log with a reserved tail of
zeros recovers exactly what was committed."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog.backends import sqlite_wal_reserve
from chanlog.backends.sqlite import WAL_AUTOCHECKPOINT_PAGES, SqliteBackend
from chanlog.backends.sqlite_wal_reserve import (
    MOST_AT_ONCE,
    START,
    WalReserve,
    log_limit,
)
from chanlog.events import Event
from chanlog.store import EventStore
from chanlog.testing import sample_events


def _log(database: Path) -> Path:
    return Path(f"{database}-wal")


def _zero_tail(path: Path) -> int:
    """How many bytes at the end of ``path`` are zeros."""
    data = path.read_bytes()
    return len(data) - len(data.rstrip(b"\0"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(SqliteBackend(tmp_path / "log.db"), projections=[]) as store:
        yield store


def _reserve(store: EventStore) -> WalReserve:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    reserve = backend._connections.wal_reserve
    assert reserve is not None
    return reserve


def test_the_limit_is_the_log_between_two_checkpoints() -> None:
    assert log_limit(WAL_AUTOCHECKPOINT_PAGES, 4096) == 32 + WAL_AUTOCHECKPOINT_PAGES * 4120
    assert log_limit(10, 1024) == 32 + 10 * 1048


def test_a_durable_writer_reserves_its_log_ahead_of_its_commits(store: EventStore) -> None:
    log = _log(store.backend.path)  # type: ignore[attr-defined]
    reserve = _reserve(store)
    events = sample_events(400)
    for event in events:
        store.append(event)
    size = log.stat().st_size
    assert size > START
    assert reserve.reserved == size
    assert _zero_tail(log) > 0  # room the next commits write into without growing the file
    assert [record.event for record in store.read_from(0)] == events
    assert store.verify() == len(events)


def test_a_writer_that_commits_little_reserves_nothing(store: EventStore) -> None:
    log = _log(store.backend.path)  # type: ignore[attr-defined]
    for event in sample_events(5):
        store.append(event)
    assert log.stat().st_size < START
    assert _zero_tail(log) == 0


def test_a_writer_that_does_not_sync_every_commit_has_no_reserve(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db", durability="normal")
    try:
        assert backend._connections.wal_reserve is None
    finally:
        backend.close()


def test_closing_the_backend_closes_the_reserves_descriptor(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    store = EventStore(backend, projections=[])
    store.append_batch(sample_events(3))
    reserve = backend._connections.wal_reserve
    assert reserve is not None and reserve._descriptor >= 0
    store.close()
    assert reserve._descriptor == -1


def _file_of(tmp_path: Path, size: int) -> Path:
    database = tmp_path / "file.db"
    _log(database).write_bytes(b"\x01" * size)
    return database


@contextlib.contextmanager
def _reserving(tmp_path: Path, size: int, limit: int) -> Iterator[tuple[Path, WalReserve]]:
    """A log of ``size`` bytes (not zeros) and a reserve on it, closed afterwards."""
    database = _file_of(tmp_path, size)
    reserve = WalReserve(database, limit)
    try:
        yield _log(database), reserve
    finally:
        reserve.close()


@pytest.mark.parametrize(
    ("size", "limit", "grown"),
    [
        (START - 1, 10 * START, START - 1),  # too small to reserve for
        (START, 10 * START, 2 * START),  # doubled
        (3 * START, 4 * START, 4 * START),  # up to the limit only
        (4 * START, 4 * START, 4 * START),  # full grown
        (5 * START, 4 * START, 5 * START),  # past it (readers kept SQLite from restarting)
        (MOST_AT_ONCE + START, 10 * MOST_AT_ONCE, 2 * MOST_AT_ONCE + START),  # one step at most
    ],
)
def test_how_far_a_reservation_grows_the_log(
    tmp_path: Path, size: int, limit: int, grown: int
) -> None:
    with _reserving(tmp_path, size, limit) as (log, reserve):
        reserve.extend()
        assert log.stat().st_size == grown
        assert reserve.reserved == grown
        assert _zero_tail(log) == grown - size
        reserve.extend()  # nothing written since: nothing more reserved
        assert log.stat().st_size == grown


def test_a_log_written_past_its_reserve_or_cut_back_is_reserved_again(tmp_path: Path) -> None:
    with _reserving(tmp_path, START, 100 * START) as (log, reserve):
        reserve.extend()
        assert log.stat().st_size == 2 * START
        with log.open("r+b") as handle:  # SQLite writes frames past the reserved end
            handle.seek(2 * START)
            handle.write(b"\x01" * 100)
        reserve.extend()
        assert log.stat().st_size == 4 * START + 200
        os.truncate(log, START)  # a TRUNCATE checkpoint
        reserve.extend()
        assert log.stat().st_size == 2 * START


def test_a_log_deleted_under_the_writer_is_followed_not_the_new_file(tmp_path: Path) -> None:
    # SQLite keeps writing the log it opened even when its name is unlinked; a file made
    # at that name afterwards is not the writer's log and gets no zeros.
    with _reserving(tmp_path, START, 100 * START) as (log, reserve):
        reserve.extend()
        with log.open("r+b") as kept:  # the descriptor SQLite would hold
            log.unlink()
            log.write_bytes(b"\x01" * START)
            kept.seek(2 * START)
            kept.write(b"\x01" * 100)
            kept.flush()
            reserve.extend()
            assert os.fstat(kept.fileno()).st_size == 4 * START + 200
        assert log.stat().st_size == START


def test_the_reserve_never_stats_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stat marks the log's times as seen (Linux 6.13+ multigrain timestamps), so SQLite's
    # next write dirties the inode and its commit's fdatasync costs ~40% more (ADR 0037).
    def refused(*_args: object, **_kwargs: object) -> os.stat_result:
        raise AssertionError("the reserve must not stat the log")

    with _reserving(tmp_path, START, 100 * START) as (log, reserve):
        monkeypatch.setattr(os, "fstat", refused)
        monkeypatch.setattr(os, "stat", refused)
        reserve.extend()
        reserve.extend()
        monkeypatch.undo()
        assert log.stat().st_size == 2 * START


def test_no_log_yet_is_no_reservation(tmp_path: Path) -> None:
    reserve = WalReserve(tmp_path / "none.db", 100 * START)
    reserve.extend()
    assert reserve.enabled and reserve.reserved == 0
    assert not _log(tmp_path / "none.db").exists()


def test_a_failed_reservation_gives_its_bytes_back_and_stops_reserving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 2 * 1024 * 1024  # reserved in two writes of 1 MiB: the second fails
    real_pwrite = os.pwrite
    calls = 0

    def disk_fills_up(descriptor: int, data: bytes, position: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(descriptor, data, position)

    monkeypatch.setattr(os, "pwrite", disk_fills_up)
    with _reserving(tmp_path, size, 100 * size) as (log, reserve):
        reserve.extend()
        assert calls == 2
        assert log.stat().st_size == size  # the first megabyte was cut off again
        assert not reserve.enabled and reserve._descriptor == -1
        reserve.extend()  # off for good
        assert calls == 2


def test_the_append_goes_on_when_a_reservation_fails(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(descriptor: int, data: bytes, position: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", no_space)
    events = sample_events(300)
    for event in events:
        store.append(event)
    assert not _reserve(store).enabled
    assert [record.event for record in store.read_from(0)] == events
    assert store.verify() == len(events)


def _crash_copy(database: Path, into: Path) -> Path:
    """The files a crash right now would leave (no transaction is open): the database and
    its log, without the shared-memory index, so SQLite recovers from the log itself."""
    into.mkdir()
    copy = into / database.name
    shutil.copyfile(database, copy)
    shutil.copyfile(_log(database), _log(copy))
    return copy


def _recovered(copy: Path) -> list[Event]:
    with EventStore(SqliteBackend(copy), projections=[]) as recovered:
        events = [record.event for record in recovered.read_from(0)]
        assert recovered.verify() == len(events)
    return events


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    appends=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=60),
    crash_at=st.integers(min_value=0),
)
def test_a_log_with_a_reserved_tail_recovers_exactly_what_was_committed(
    tmp_path_factory: pytest.TempPathFactory, appends: list[int], crash_at: int
) -> None:
    """A crash between two commits, wherever the reserve then stands (zeros just written,
    or partly filled with frames), loses nothing and invents nothing: copies of the files
    without the shared-memory index make SQLite recover from the log itself."""
    directory = tmp_path_factory.mktemp("reserved")
    database = directory / "log.db"
    crash_at %= len(appends)
    previous = (sqlite_wal_reserve.START, sqlite_wal_reserve.MOST_AT_ONCE)
    sqlite_wal_reserve.START, sqlite_wal_reserve.MOST_AT_ONCE = 4096, 16384
    try:
        with EventStore(SqliteBackend(database), projections=[]) as store:
            committed: list[object] = []
            midway: list[object] = []
            for index, count in enumerate(appends):
                events = sample_events(count, salt=f"{index}:")
                store.append_batch(events)
                committed += events
                if index == crash_at:
                    midway = list(committed)
                    _crash_copy(database, directory / "midway")
            with store.backend.write():
                pass  # a transaction that writes nothing still reserves first
            assert _zero_tail(_log(database)) > 0
            _crash_copy(database, directory / "end")
        assert _recovered(directory / "midway" / database.name) == midway
        assert _recovered(directory / "end" / database.name) == committed
    finally:
        sqlite_wal_reserve.START, sqlite_wal_reserve.MOST_AT_ONCE = previous


def test_the_log_is_found_by_the_path_sqlite_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path, then a change of directory, or a database reached through a
    symbolic link: the reserve grows the log SQLite writes, never a file that only has the
    same name from somewhere else."""
    real = tmp_path / "real"
    real.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    SqliteBackend(real / "log.db").close()
    (tmp_path / "link.db").symlink_to(real / "log.db")
    monkeypatch.chdir(tmp_path)
    store = EventStore(SqliteBackend("link.db"), projections=[])
    try:
        monkeypatch.chdir(elsewhere)
        decoy = elsewhere / "link.db-wal"
        decoy.write_bytes(b"\x01" * START)
        events = sample_events(400)
        for event in events:
            store.append(event)
        assert decoy.read_bytes() == b"\x01" * START
        assert _zero_tail(real / "log.db-wal") > 0
    finally:
        store.close()


def test_a_log_that_cannot_be_opened_turns_the_reserve_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not tried again on every transaction: one refusal is enough."""
    real_open = os.open
    calls = 0

    def refused(path: str, flags: int, mode: int = 0o777) -> int:
        nonlocal calls
        if path.endswith("-wal"):
            calls += 1
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode)

    with _reserving(tmp_path, START, 100 * START) as (log, reserve):
        monkeypatch.setattr(os, "open", refused)
        reserve.extend()
        reserve.extend()
        assert calls == 1 and not reserve.enabled
        assert log.stat().st_size == START
