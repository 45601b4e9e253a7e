"""A storage failure at each write a durable consumer makes to its store, on memory and
SQLite: the cases of :mod:`bus.consumer_faults` (the PostgreSQL plugin runs them too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import chanlog
from bus.consumer_faults import *  # noqa: F403 - the shared cases, collected here
from bus.consumer_faults import Node
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    backend = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "l.db")
    with chanlog.EventStore(backend, projections=[], snapshot_policy="never") as store:
        yield Node(store)
