"""``chanlog run --wait-for-store SECONDS`` (and ``chanlog ingest``): a store that cannot be
opened for a reason of its storage (a database server not up yet) is tried again, saying
so, until it opens or the time is up; any other error fails at once. The real case, a
PostgreSQL server started after the worker, is in plugins/chanlog-postgres/tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chanlog.cli import app
from chanlog.cli.commands import bus
from chanlog.config import open_store
from chanlog.errors import ConfigError, StorageError
from cli.conftest import Run

NOT_UP = "connection to server at 127.0.0.1:5999 failed: Connection refused"


def _failing(monkeypatch: pytest.MonkeyPatch, times: int, error: Exception) -> list[int]:
    """Make opening the store fail ``times`` times with ``error``; count the tries."""
    opened = open_store  # what app calls, patched below where app looks it up
    tries: list[int] = []

    def opener(*args: Any, **kwargs: Any) -> Any:
        tries.append(1)
        if len(tries) <= times:
            raise error
        return opened(*args, **kwargs)

    monkeypatch.setattr(app, "open_store", opener)
    return tries


@pytest.fixture(autouse=True)
def _a_consumer_refused_once_the_store_opens(run: Run) -> None:
    """A consumer in the working directory's configuration (``--db`` names the log) that
    the worker refuses once the store opened: a new consumer starting beyond the end of
    the log. So a run that opened the store ends there, and says so."""
    Path("chanlog.toml").write_text(
        '[consumers.late]\nhandler = "jsonl"\npath = "late.jsonl"\nstart = 1000000\n'
    )


OPENED = "consumers.late.start = 1000000 is beyond the end of the log"


def test_the_store_is_tried_again_until_it_opens(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    tries = _failing(monkeypatch, 2, StorageError(NOT_UP))
    result = run("run", "--wait-for-store", "60")
    assert len(tries) == 3
    assert result.output.count(f"the store cannot be opened yet ({NOT_UP}); trying again") == 2
    # Opened: what follows is the worker's own complaint.
    assert result.exit_code == 2
    assert OPENED in result.output


def test_the_wait_is_bounded_and_the_last_failure_reported(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries = _failing(monkeypatch, 10**6, StorageError(NOT_UP))
    host = SimpleNamespace(ingest_sources={"stream": lambda **options: None})
    monkeypatch.setattr(bus, "default_host", lambda: host)  # never built: the store never opens
    result = run("ingest", "stream", "--wait-for-store", "0.3")
    assert result.exit_code == 5
    assert result.output.splitlines()[-1] == f"chanlog: storage error: {NOT_UP}"
    assert 2 <= len(tries) < 10  # 0.1, 0.2 s, then what is left of 0.3 s


def test_the_wait_can_come_from_the_environment(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    tries = _failing(monkeypatch, 1, StorageError(NOT_UP))
    monkeypatch.setenv("CHANLOG_WAIT_FOR_STORE", "60")
    result = run("run")
    assert len(tries) == 2
    assert OPENED in result.output


@pytest.mark.parametrize("seconds", [None, "60"])
def test_other_errors_and_no_wait_fail_at_once(
    run: Run, monkeypatch: pytest.MonkeyPatch, seconds: str | None
) -> None:
    error: Exception = StorageError(NOT_UP) if seconds is None else ConfigError("bad dsn")
    tries = _failing(monkeypatch, 10**6, error)
    result = run("run", *(["--wait-for-store", seconds] if seconds else []))
    assert len(tries) == 1
    assert result.exit_code == (5 if seconds is None else 2)
    assert "cannot be opened yet" not in result.output
