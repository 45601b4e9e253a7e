"""``close()`` racing an append on PostgreSQL: the append that found the store open and
had not written yet is refused with "the store is closed" and writes nothing (the core
tests: tests/core/test_close_races.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chanlog_postgres import PostgresBackend

from closing_midway import an_append_under_way_as_the_store_closes_is_refused


@pytest.mark.parametrize("batch", [False, True], ids=["append", "append_batch"])
def test_an_append_under_way_as_the_store_closes_is_refused_and_writes_nothing(
    open_postgres: Callable[..., PostgresBackend], monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    an_append_under_way_as_the_store_closes_is_refused(open_postgres, monkeypatch, batch=batch)
