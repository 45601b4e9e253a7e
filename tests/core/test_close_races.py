"""``close()`` racing appends: an append that was on its way when the store closed is
refused with "the store is closed" and writes nothing, on every backend; one that returned
an offset finds its event there once the log is opened again. Eight threads appending
while another closes, and the step in between made deterministic."""

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
from chanlog.errors import ChanlogError
from chanlog_samples import make_signed, thread_channel, thread_channels_created
from closing_midway import an_append_under_way_as_the_store_closes_is_refused

THREADS = 8
TURNS = 60
BOUND = 20.0  # seconds: a bound for a thread, not a timing claim

Opener = Callable[[], Backend]


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same log again each time it is called (the memory backend: the same one)."""
    if request.param == "memory":
        memory = MemoryBackend()
        yield lambda: memory
    else:
        yield lambda: SqliteBackend(tmp_path / "log.db", durability="normal")


@pytest.mark.parametrize("batch", [False, True], ids=["append", "append_batch"])
def test_an_append_under_way_as_the_store_closes_is_refused_and_writes_nothing(
    reopen: Opener, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    an_append_under_way_as_the_store_closes_is_refused(reopen, monkeypatch, batch=batch)


def test_eight_threads_appending_while_the_store_closes(reopen: Opener) -> None:
    store = EventStore(reopen())
    store.append_batch(thread_channels_created(THREADS))
    acknowledged: dict[int, Any] = {}
    unexpected: list[BaseException] = []
    started = threading.Barrier(THREADS + 1)

    def append(thread: int) -> None:
        started.wait()
        for turn in range(TURNS):
            event = make_signed(turn, thread_channel(thread))
            try:
                acknowledged[store.append(event)] = event
            except ChanlogError as refused:
                if "the store is closed" not in str(refused):
                    unexpected.append(refused)
                return
            except BaseException as other:  # collected: the test's thread asserts
                unexpected.append(other)
                return

    threads = [threading.Thread(target=append, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    started.wait()
    for _ in range(int(BOUND * 1000)):  # a few appends in: the close lands in mid-flight
        if len(acknowledged) >= THREADS:
            break
        threading.Event().wait(0.001)
    store.close()
    with EventStore(reopen(), projections=[]) as at_close:
        closed_length = len(at_close)
    for thread in threads:
        thread.join(BOUND)
        assert not thread.is_alive(), "an append hung as the store closed"
    assert unexpected == []
    with EventStore(reopen(), projections=[]) as again:
        records = list(again.read_from(0))
    assert len(records) == closed_length, "records were appended after close() returned"
    for offset, event in acknowledged.items():
        assert records[offset].event == event
