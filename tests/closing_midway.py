"""A store closed in the middle of an append: after the append found it open, before it
writes (the core and PostgreSQL close-race tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from chanlog import EventStore, RecordedEvent
from chanlog.backends.base import Backend
from chanlog.errors import ChanlogError
from chanlog_samples import make_signed, thread_channel, thread_channels_created

__all__ = ["an_append_under_way_as_the_store_closes_is_refused", "close_as_it_encodes"]

BOUND = 20.0  # seconds: a bound for the closing thread, not a timing claim


def close_as_it_encodes(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``store`` close (on another thread, as an application's shutdown would) while
    its next append is encoded."""
    pipeline = store._pipeline  # the step between the open check and the write
    encode = pipeline.encode

    def encode_then_close(items: Any, *, batch: bool) -> Any:
        encoded = encode(items, batch=batch)
        closer = threading.Thread(target=store.close)
        closer.start()
        closer.join(BOUND)
        return encoded

    monkeypatch.setattr(pipeline, "encode", encode_then_close)


def an_append_under_way_as_the_store_closes_is_refused(
    reopen: Callable[[], Backend], monkeypatch: pytest.MonkeyPatch, *, batch: bool
) -> None:
    """An append (or a batch of one) that found the store open and had not written yet is
    refused with "the store is closed"; nothing of it is in the log, nor delivered."""
    store = EventStore(reopen())
    store.append_batch(thread_channels_created(1))
    delivered: list[RecordedEvent] = []
    store.subscribe(delivered.append)
    close_as_it_encodes(store, monkeypatch)
    event = make_signed(0, thread_channel(0))
    with pytest.raises(ChanlogError, match="the store is closed"):
        store.append_batch([event]) if batch else store.append(event)
    assert store.closed
    with EventStore(reopen()) as again:
        assert len(again) == 1
    assert delivered == []
