"""Subscriptions and the event-appended signal: isolation, catch-up, lifecycle."""

from __future__ import annotations

import logging

import pytest

from chanlog import EventStore, InvalidArgument, InvalidTransition, RecordedEvent
from chanlog.signals import event_appended
from chanlog_samples import make_signed


def test_raising_subscriber_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    store = EventStore(projections=[])
    before: list[int] = []
    after: list[int] = []

    def broken(record: RecordedEvent) -> None:
        if record.offset % 2 == 0:
            raise RuntimeError(f"boom at {record.offset}")

    store.subscribe(lambda r: before.append(r.offset))
    failing = store.subscribe(broken, name="broken")
    store.subscribe(lambda r: after.append(r.offset))
    with caplog.at_level(logging.ERROR, logger="chanlog.subscriptions"):
        offsets = [store.append(make_signed(t)) for t in range(5)]
    assert offsets == [0, 1, 2, 3, 4]
    assert before == after == [0, 1, 2, 3, 4]
    assert failing.failed and failing.failure_count == 3
    assert [f.offset for f in failing.failures] == [0, 2, 4]
    assert isinstance(failing.failures[0].error, RuntimeError)
    assert failing.delivered == 5 and failing.next_offset == 5
    assert "broken failed on offset 0" in caplog.text


def test_raising_blinker_receiver_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    store = EventStore(projections=[])
    seen: list[int] = []

    def broken(sender: object, record: RecordedEvent) -> None:
        raise ValueError("receiver bug")

    def good(sender: object, record: RecordedEvent) -> None:
        assert sender is store
        seen.append(record.offset)

    event_appended.connect(broken, sender=store)
    event_appended.connect(good, sender=store)
    try:
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            assert store.append(make_signed(0)) == 0
        assert seen == [0]
        assert "receiver" in caplog.text
    finally:
        event_appended.disconnect(broken, sender=store)
        event_appended.disconnect(good, sender=store)


def test_subscribers_are_held_strongly() -> None:
    import gc

    store = EventStore(projections=[])
    seen: list[int] = []

    def register() -> None:
        # The callback's only reference is the subscription itself.
        store.subscribe(lambda r: seen.append(r.offset))

    register()
    gc.collect()
    store.append(make_signed(0))
    assert seen == [0]


def test_catch_up_then_live() -> None:
    store = EventStore(projections=[])
    store.append_batch([make_signed(t) for t in range(10)])
    seen: list[int] = []
    with store.subscribe(lambda r: seen.append(r.offset), from_offset=4) as sub:
        assert seen == [4, 5, 6, 7, 8, 9]
        store.append(make_signed(10))
        assert seen[-1] == 10
        assert sub.active and "next_offset=11" in repr(sub)
    store.append(make_signed(11))
    assert seen[-1] == 10  # closed: no more delivery
    assert store.subscriptions == []


def test_subscribe_beyond_the_end_waits_for_that_offset() -> None:
    store = EventStore(projections=[])
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset), from_offset=3)
    for turn in range(5):
        store.append(make_signed(turn))
    assert seen == [3, 4]


def test_live_subscription_skips_history() -> None:
    store = EventStore(projections=[])
    store.append_batch([make_signed(t) for t in range(3)])
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset))
    store.append(make_signed(3))
    assert seen == [3]


def test_subscribe_argument_checks() -> None:
    store = EventStore(projections=[])
    with pytest.raises(InvalidArgument):
        store.subscribe(lambda r: None, from_offset=-1)


def test_no_notification_for_refused_append() -> None:
    from chanlog import ObjectiveApproved

    store = EventStore()  # built-in projections on: approving an unknown objective is illegal
    if not store.projections:
        pytest.skip("built-in projections are not registered")
    seen: list[int] = []
    store.subscribe(lambda r: seen.append(r.offset))
    with pytest.raises(InvalidTransition):
        store.append(ObjectiveApproved(objective_id="0x" + "77" * 32, timestamp_ms=1))
    assert seen == [] and len(store) == 0


def test_lifecycle_hooks() -> None:
    from chanlog import PluginHost, hookimpl

    calls: list[str] = []

    class Lifecycle:
        @hookimpl
        def chanlog_store_opened(self, store: EventStore) -> None:
            calls.append("hook-opened")

        @hookimpl
        def chanlog_store_closing(self, store: EventStore) -> None:
            calls.append("hook-closing")

    host = PluginHost(load_entry_points=False)
    host.register(Lifecycle(), name="lifecycle")

    with EventStore(plugins=host, projections=[]):
        assert calls == ["hook-opened"]
    assert calls == ["hook-opened", "hook-closing"]


def test_the_watcher_of_a_shared_log_says_a_storage_failure_in_one_line(
    tmp_path: object, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database away is expected, not a bug: one warning line naming it, no traceback,
    and the watcher goes on."""
    import threading
    from pathlib import Path

    from chanlog.backends.sqlite import SqliteBackend
    from chanlog.errors import StorageError

    backend = SqliteBackend(Path(str(tmp_path)) / "shared.db")
    asked = threading.Event()
    waits = {"count": 0}
    wait = backend.wait

    def away_once(length: int, timeout: float) -> bool:
        waits["count"] += 1
        if waits["count"] == 1:
            raise StorageError("the database is away")
        asked.set()
        return wait(length, timeout)

    monkeypatch.setattr(backend, "wait", away_once)
    with caplog.at_level(logging.WARNING, logger="chanlog"), EventStore(backend) as store:
        store.subscribe(lambda record: None)
        assert asked.wait(30)
    said = [r for r in caplog.records if "watching the shared log failed" in r.getMessage()]
    assert len(said) == 1
    assert "the database is away" in said[0].getMessage()
    assert said[0].exc_info is None
