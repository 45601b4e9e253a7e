"""The watcher of a shared log (the thread that folds and delivers what other processes
append) says a failure that lasts once, not at every retry; says when it is over; and
survives any exception, so that subscribers do not silently stop."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

import chanlog
from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import StorageError
from chanlog.events import ObjectiveApproved, ObjectiveCreated
from chanlog.failure_log import REMIND_EVERY, FailureLog
from tips_plugin import TipPaid, host_with_tips

OBJECTIVE = "0x" + "0b" * 32


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_a_failure_that_repeats_is_said_once_then_every_minute_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    log = FailureLog(logging.getLogger("chanlog.test"), "polling", "nothing moves", clock=clock)
    away = StorageError("the database is away")
    with caplog.at_level(logging.DEBUG, logger="chanlog.test"):
        log.succeeded()  # nothing failed: nothing to say
        assert not log.failing
        for _ in range(30):
            log.failed(away, logging.WARNING)
            clock.now += 1.0
        assert log.failing
        assert [r.getMessage() for r in caplog.records] == [
            "polling failed (StorageError: the database is away); nothing moves; retrying"
        ]
        clock.now += REMIND_EVERY
        log.failed(away, logging.WARNING)
        assert caplog.records[-1].getMessage() == (
            "polling still fails after 31 tries over 90 s "
            "(StorageError: the database is away); retrying"
        )
        log.failed(away, logging.WARNING)  # just reminded
        other = StorageError("the disk is full")
        log.failed(other, logging.ERROR, with_traceback=True)
        assert caplog.records[-1].levelno == logging.ERROR
        assert "the disk is full" in caplog.records[-1].getMessage()
        assert caplog.records[-1].exc_info is not None
        clock.now += 10
        log.succeeded()
        assert caplog.records[-1].getMessage() == (
            "polling works again, after 33 failed tries over 100 s"
        )
        assert not log.failing
        log.succeeded()
        log.failed(away, logging.WARNING)  # a new outage is said again
    assert len(caplog.records) == 5
    assert len(_said(caplog, "polling failed (StorageError: the database is away)")) == 2


def test_a_record_no_plugin_of_this_process_registers_is_said_once_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process, with the plugin, appends a ``tip-paid``; this one has no plugin for
    it, so its watcher cannot fold it. It said so with a traceback every second, for as long
    as the store stayed open; now once, naming the offset, the type and what it means."""
    with_tips = host_with_tips()
    path = tmp_path / "node.db"
    with (
        caplog.at_level(logging.WARNING, logger="chanlog"),
        EventStore(SqliteBackend(path), plugins=with_tips, projections=[]) as other,
    ):
        other.append(
            ObjectiveCreated(objective_id=OBJECTIVE, objective_type="DirectFund", timestamp_ms=1)
        )
        with EventStore(SqliteBackend(path), projections=[]) as store:
            store.subscribe(lambda record: None)
            other.append(TipPaid(channel_id="0x" + "cc" * 32, amount=5, timestamp_ms=2))
            other.append(ObjectiveApproved(objective_id=OBJECTIVE, timestamp_ms=3))
            deadline = time.monotonic() + 30
            while not _said(caplog, "watching the shared log failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(2.5)  # two more retries at least
    said = _said(caplog, "watching the shared log")
    assert len(said) == 1, [r.getMessage() for r in said]
    message = said[0].getMessage()
    assert "DecodeError: offset 1: event type 'tip-paid' is not registered" in message
    assert "this store folds and delivers nothing other processes append" in message
    assert said[0].levelno == logging.ERROR and said[0].exc_info is None


def test_the_watcher_survives_an_exception_that_is_no_chanlog_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug below the watcher (here in the backend's wait) ended its thread: subscribers
    then got nothing more from other processes, and nothing said so but a thread's
    traceback. Now it is logged with its traceback, the watcher goes on, and its end is
    said."""
    path = tmp_path / "shared.db"
    backend = SqliteBackend(path)
    failures = {"left": 2}
    wait = backend.wait

    def broken_twice(length: int, timeout: float) -> bool:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("a bug in the backend")
        return wait(length, timeout)

    monkeypatch.setattr(backend, "wait", broken_twice)
    seen: list[int] = []
    arrived = threading.Event()

    def on_record(record: chanlog.RecordedEvent) -> None:
        seen.append(record.offset)
        arrived.set()

    with (
        caplog.at_level(logging.WARNING, logger="chanlog"),
        EventStore(backend, projections=[]) as store,
        EventStore(SqliteBackend(path), projections=[]) as other,
    ):
        store.subscribe(on_record)
        other.append(
            ObjectiveCreated(objective_id=OBJECTIVE, objective_type="DirectFund", timestamp_ms=1)
        )
        assert arrived.wait(30)
        deadline = time.monotonic() + 30
        while not _said(caplog, "works again"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert seen == [0]
    failed = _said(caplog, "watching the shared log failed")
    assert len(failed) == 1
    assert "RuntimeError: a bug in the backend" in failed[0].getMessage()
    assert failed[0].exc_info is not None
    assert _said(caplog, "watching the shared log works again, after 2 failed tries")
