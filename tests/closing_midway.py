"""A store closed in the middle of an append: after the append found it open, before it
writes (the core and PostgreSQL close-race tests)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chanlog import EventStore

__all__ = ["close_as_it_encodes"]

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
