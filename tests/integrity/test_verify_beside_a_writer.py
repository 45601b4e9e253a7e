"""verify of a log another writer commits to meanwhile (the operating guide has operators
run ``chanlog verify`` beside a live node): the stream index and the snapshots it reads after
the log's length may hold what was committed since, which is no trace of a cut. A cut is
still one (tests/backends/test_sqlite_tamper.py, tests/integrity/test_witnesses.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.store import EventStore
from integrity.beside_a_writer import events, verify_beside_a_retake, verify_beside_a_writer


@pytest.fixture(params=["memory", "sqlite"])
def writer_and_reader(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[EventStore, Backend]]:
    if request.param == "memory":
        backend = MemoryBackend()
        with EventStore(backend) as writer:
            yield writer, backend
        return
    path = tmp_path / "node.db"
    with EventStore(SqliteBackend(path)) as writer:
        reader = SqliteBackend(path, read_only=True)
        try:
            yield writer, reader
        finally:
            reader.close()


def test_what_a_writer_commits_while_verify_reads_is_no_cut(
    writer_and_reader: tuple[EventStore, Backend],
) -> None:
    verify_beside_a_writer(*writer_and_reader)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_snapshot_taken_again_while_verify_reads_is_no_change_outside_chanlog(
    kind: str, tmp_path: Path
) -> None:
    """Before ADR 0056 verify compared the snapshot stored there with the announcement it
    had read, and said "changed outside chanlog"."""
    if kind == "memory":
        backend = MemoryBackend()
        verify_beside_a_retake(backend, backend, backend)
        return
    path = tmp_path / "node.db"
    handles = [SqliteBackend(path), SqliteBackend(path), SqliteBackend(path, read_only=True)]
    try:
        verify_beside_a_retake(*handles)
    finally:
        for handle in handles:
            handle.close()


def test_verify_again_and_again_while_a_node_appends_and_snapshots(tmp_path: Path) -> None:
    """Verify through its own handle, twenty times, while another thread appends one event
    per commit and takes a snapshot every five (before the fix, most of those runs failed
    with "records were cut" or "the log's tail was cut")."""
    path = tmp_path / "node.db"
    traffic = events()
    done = threading.Event()
    with EventStore(SqliteBackend(path)) as writer:
        writer.append_batch(traffic[:20])

        def node() -> None:
            try:
                for number, event in enumerate(traffic[20:], start=1):
                    writer.append(event)
                    if number % 5 == 0:
                        writer.snapshot()
            finally:
                done.set()

        thread = threading.Thread(target=node)
        thread.start()
        verified: list[int] = []
        reader = EventStore(SqliteBackend(path, read_only=True), projections=[], read_only=True)
        try:
            while not done.is_set() or len(verified) < 20:
                verified.append(reader.verify())
        finally:
            thread.join()  # the node writes to the end, whatever verify said
        with reader:
            assert reader.verify() == len(writer)
    assert verified == sorted(verified) and len(set(verified)) > 1  # it ran beside the node
