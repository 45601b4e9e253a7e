"""Helpers of the bus tests: a store with a workload, and handlers that record."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import chanlog
from chanlog.records import RecordedEvent
from chanlog.workload import Workload, WorkloadConfig


def fill(store: chanlog.EventStore, seed: int = 1, channels: int = 3, turns: int = 6) -> None:
    """Append a small realistic workload."""
    for batch in Workload(WorkloadConfig(seed=seed, channels=channels, turns=turns)).batches(64):
        store.append_batch(batch)


def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Wait until ``condition()`` holds; fail after ``seconds`` (a bound, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Recorder:
    """A handler that keeps the offsets it was handed, and can fail on some."""

    def __init__(self, fail_on: set[int] | None = None, fail_times: int = 10**9) -> None:
        self.offsets: list[int] = []
        self.fail_on = fail_on or set()
        self.fail_times = fail_times
        self.failed: dict[int, int] = {}
        self.lock = threading.Lock()

    def __call__(self, record: RecordedEvent) -> None:
        with self.lock:
            if (
                record.offset in self.fail_on
                and self.failed.get(record.offset, 0) < self.fail_times
            ):
                self.failed[record.offset] = self.failed.get(record.offset, 0) + 1
                raise RuntimeError(f"cannot handle {record.offset}")
            self.offsets.append(record.offset)


@pytest.fixture
def store() -> Iterator[chanlog.EventStore]:
    """An in-memory store holding a small workload."""
    with chanlog.EventStore() as opened:
        fill(opened)
        yield opened
