"""``close()`` racing an append on PostgreSQL: the append that found the store open and
had not written yet is refused with "the store is closed" and writes nothing (the core
tests: tests/core/test_close_races.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chanlog_postgres import PostgresBackend

from chanlog import EventStore, RecordedEvent
from chanlog.errors import ChanlogError
from chanlog_samples import make_signed, thread_channel, thread_channels_created
from closing_midway import close_as_it_encodes


@pytest.mark.parametrize("batch", [False, True], ids=["append", "append_batch"])
def test_an_append_under_way_as_the_store_closes_is_refused_and_writes_nothing(
    open_postgres: Callable[..., PostgresBackend], monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    store = EventStore(open_postgres())
    store.append_batch(thread_channels_created(1))
    delivered: list[RecordedEvent] = []
    store.subscribe(delivered.append)
    close_as_it_encodes(store, monkeypatch)
    event = make_signed(0, thread_channel(0))
    with pytest.raises(ChanlogError, match="the store is closed"):
        store.append_batch([event]) if batch else store.append(event)
    with EventStore(open_postgres()) as again:
        assert len(again) == 1
    assert delivered == []
