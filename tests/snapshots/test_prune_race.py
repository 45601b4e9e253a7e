"""Pruning while another writer takes an incremental snapshot (ADR 0038): which snapshots to
delete is decided under the writer lock, so a snapshot is never taken on a base that is
deleted after the writer checked it was there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference
from chanlog.workload import Workload
from snapshots.pruned_between_reads import read_while_pruned

ONE_SECOND = 1.0


@pytest.fixture(params=["sqlite", "memory"])
def two_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two backends on one log: two SQLite connections to one file, or one memory backend."""
    first: Backend
    second: Backend
    if request.param == "sqlite":
        first, second = SqliteBackend(tmp_path / "log.db"), SqliteBackend(tmp_path / "log.db")
    else:
        first = second = MemoryBackend()
    yield first, second
    for backend in (first, second):
        backend.close()


def _every_snapshot_opens(store: EventStore) -> None:
    backend: Any = store.backend
    for offset, _size in backend.snapshot_sizes():
        snapshot = backend.latest_snapshot(offset)
        assert snapshot is not None and snapshot.offset == offset
        store.snapshots.open(snapshot)  # raises for a snapshot whose base is gone


def _on_listing(
    backend: Backend, act: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> list[threading.Thread]:
    """Run ``act`` in a thread each time this thread lists ``backend``'s snapshots, and give
    it a second to finish first (it cannot while a write transaction holds the log)."""
    listing = backend.snapshot_sizes  # type: ignore[attr-defined]
    pruning = threading.current_thread()
    started: list[threading.Thread] = []

    def snapshot_sizes() -> list[tuple[int, int]]:
        sizes: list[tuple[int, int]] = listing()
        if threading.current_thread() is pruning:
            thread = threading.Thread(target=act)
            thread.start()
            started.append(thread)
            thread.join(ONE_SECOND)
        return sizes

    monkeypatch.setattr(backend, "snapshot_sizes", snapshot_sizes)
    return started


def test_a_snapshot_taken_while_another_writer_prunes_stays_readable(
    two_backends: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_a, backend_b = two_backends
    events = iter(Workload(channels=6, turns=12, seed=5).events())
    node = EventStore(backend_a, snapshot_policy=EveryNEvents(n=10**9))
    node.append_batch([next(events) for _ in range(30)])
    base = node.snapshot()  # the node's chain starts here
    pruner = EventStore(backend_b, snapshot_policy=EveryNEvents(n=10**9, incremental=False))
    pruner.append_batch([next(events) for _ in range(10)])
    pruner.snapshot()  # whole: the pruner keeps it and dooms the node's base

    taken = []

    def node_takes_one() -> None:
        node.append_batch([next(events) for _ in range(3)])
        taken.append(node.snapshot())

    threads = _on_listing(backend_b, node_takes_one, monkeypatch)
    pruner.prune_snapshots(keep=1)
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    assert len(taken) == len(threads) >= 1
    for store in (node, pruner):
        _every_snapshot_opens(store)
    # Whatever the node took on its base went in before the prune decided (the base was
    # kept), or after it (then the base was gone and the snapshot is whole).
    offsets = {offset for offset, _ in backend_b.snapshot_sizes()}
    for snapshot in taken:
        reference = base_reference(snapshot)
        if reference is not None and reference[0] == base.offset:
            assert base.offset in offsets
    assert node.snapshots.latest_snapshot() == taken[-1]


def test_the_prune_decides_inside_a_write_transaction(tmp_path: Path) -> None:
    backend = SqliteBackend(tmp_path / "log.db")
    store = EventStore(backend, snapshot_policy=EveryNEvents(n=10**9, incremental=False))
    events = Workload(channels=2, turns=6, seed=3).events()
    for chunk in range(3):
        store.append_batch(events[chunk * 4 : chunk * 4 + 4])
        store.snapshot()
    in_transaction: list[bool] = []
    listing = backend.snapshot_sizes

    def snapshot_sizes() -> list[tuple[int, int]]:
        in_transaction.append(backend._connections.writer.in_transaction)
        return listing()

    backend.snapshot_sizes = snapshot_sizes  # type: ignore[method-assign]
    pruned = store.prune_snapshots(keep=1)
    assert in_transaction == [False, True]  # a look first, then the decision under the lock
    assert pruned and not set(pruned) & {offset for offset, _ in listing()}
    backend.close()


@pytest.mark.parametrize("opening", [False, True], ids=["reconstruct", "open"])
@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_reader_whose_base_is_pruned_between_its_reads_folds_what_a_replay_does(
    kind: str, opening: bool, tmp_path: Path
) -> None:
    if kind == "memory":
        backend = MemoryBackend()
        read_while_pruned(backend, backend, backend, opening=opening)
        return
    path = tmp_path / "log.db"
    handles = [SqliteBackend(path), SqliteBackend(path), SqliteBackend(path, read_only=True)]
    try:
        read_while_pruned(*handles, opening=opening)
    finally:
        for handle in handles:
            handle.close()
