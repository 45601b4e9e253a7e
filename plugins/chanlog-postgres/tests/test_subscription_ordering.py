"""Subscribers of a store on a PostgreSQL schema that two other processes append to, while
this process appends from its threads and a callback appends its reactions (group commit):
every subscriber gets every record once, in offset order, with no gap (ADR 0065)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from chanlog_postgres import PostgresBackend

from chanlog import EventStore, RecordedEvent
from chanlog.testing.events import sample_events

pytestmark = pytest.mark.postgres

DEADLINE = 120.0  # seconds: a bound for a thread or process, not a timing claim

CHILD = """
import sys
from chanlog import EventStore
from chanlog.testing.events import sample_events
from chanlog_postgres import PostgresBackend

backend = PostgresBackend(dsn=sys.argv[1], schema=sys.argv[2], durability="normal")
with EventStore(backend, projections=[]) as store:
    for event in sample_events(int(sys.argv[3]), salt=sys.argv[4]):
        store.append(event)
"""


def _in_order(offsets: list[int], end: int) -> None:
    assert offsets == list(range(end)), f"{offsets[:5]}... of {len(offsets)}, end {end}"


def test_three_processes_on_one_schema(
    postgres_dsn: str, schema: str, backend: PostgresBackend
) -> None:
    per_child = 100
    with EventStore(backend, projections=[]) as store:
        reacted: list[int] = []

        def react(record: RecordedEvent) -> None:
            reacted.append(record.offset)
            if record.offset % 10 == 0:
                store.append(sample_events(1, start=record.offset, salt="reaction:")[0])

        store.subscribe(react, from_offset=0)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, postgres_dsn, schema, str(per_child), f"c{n}:"]
            )
            for n in range(2)
        ]
        mine = [
            threading.Thread(
                target=lambda n=n: [store.append(e) for e in sample_events(30, salt=f"own-{n}:")],
                daemon=True,
            )
            for n in range(3)
        ]
        for thread in mine:
            thread.start()
        late: list[int] = []
        store.subscribe(lambda record: late.append(record.offset), 0)
        for child in children:
            assert child.wait(DEADLINE) == 0
        for thread in mine:
            thread.join(DEADLINE)
            assert not thread.is_alive(), "an appending thread never returned (deadlock?)"
        while store.refresh() != len(store):
            pass
        total = store.refresh()
        assert total >= 2 * per_child + 3 * 30
        _in_order(reacted, total)
        _in_order(late, total)
        assert store.verify() == total
