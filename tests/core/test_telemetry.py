"""The instrumentation points (``chanlog.telemetry``, ADR 0035) with a fake implementation:
what a provider is asked, what the store's parts report, and that nothing is installed (or
wrapped) when no provider offers telemetry."""

from __future__ import annotations

import gc
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

import chanlog
from chanlog.errors import ConcurrencyError, IntegrityError, InvalidEvent, InvalidTransition
from chanlog.plugins.host import PluginHost
from chanlog.records import RecordedEvent
from chanlog.telemetry import (
    ConsumerTelemetry,
    RelayTelemetry,
    StoreTelemetry,
    TelemetryProvider,
    figures,
    refusal_rule,
    telemetry_of,
)
from chanlog.testing import sample_events
from chanlog.workload.generator import Workload
from fake_telemetry import FakeProvider, FakeRelay, FakeTelemetry, host_with


def test_the_fakes_implement_the_protocols() -> None:
    fake = FakeTelemetry()
    assert isinstance(fake, StoreTelemetry)
    assert isinstance(fake.consumer("c"), ConsumerTelemetry)
    assert isinstance(FakeRelay(), RelayTelemetry)
    assert isinstance(FakeProvider(None), TelemetryProvider)


def test_nothing_is_installed_or_wrapped_when_no_provider_offers_telemetry() -> None:
    provider = FakeProvider(None)
    with chanlog.EventStore(plugins=host_with(fake=provider)) as store:
        assert provider.asked == [store]
        assert telemetry_of(store) is None
        assert "write" not in vars(store.backend)
        assert "reconstruct" not in vars(store.reconstructor)
    with chanlog.EventStore(plugins=PluginHost(load_entry_points=False)) as plain:
        assert telemetry_of(plain) is None


def test_the_first_provider_by_name_that_offers_one_is_installed() -> None:
    first, second = FakeTelemetry(), FakeTelemetry()
    none = FakeProvider(None)
    host = host_with(b=FakeProvider(second), a=FakeProvider(first), _none=none)
    with chanlog.EventStore(plugins=host) as store:
        assert getattr(telemetry_of(store), "telemetry", None) is first
    assert len(none.asked) == 1  # "_none" sorts first and offered none


def test_appends_commits_and_refusals_are_reported() -> None:
    fake = FakeTelemetry()
    events = Workload(channels=1, turns=2).events()
    with chanlog.EventStore(plugins=host_with(fake=FakeProvider(fake))) as store:
        store.append(events[0])
        store.append(events[0])  # known: nothing written
        store.append_batch(events[1:4])
        with pytest.raises(InvalidTransition):
            store.append(events[5 + 1])  # a state signed before its channel exists
        with pytest.raises(InvalidEvent):
            store.append({"type": "nothing-like-it", "payload": {}})
        with pytest.raises(ConcurrencyError):
            store.append(events[4], expected_version=9)
    assert fake.of("appended") == [
        ("appended", 1, [0], True),
        ("appended", 1, [], True),
        ("appended", 3, [1, 2, 3], True),
    ]
    assert [call[2] for call in fake.of("refused")] == [
        "InvalidTransition",
        "InvalidEvent",
        "ConcurrencyError",
    ]
    assert fake.of("refused")[2][1] == "expected version"
    assert fake.of("committed")[0] == ("committed", False)  # memory: nothing made durable


def test_a_group_commit_reports_each_append_once(tmp_path: Path) -> None:
    fake = FakeTelemetry()
    backend = {"name": "sqlite", "path": str(tmp_path / "log.db")}
    events = sample_events(80)
    with chanlog.open(
        backend=backend, projections=[], plugins=host_with(f=FakeProvider(fake))
    ) as s:

        def write(part: list[Any]) -> None:
            for event in part:
                s.append(event)

        threads = [threading.Thread(target=write, args=(events[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(s) == 80
    appended = fake.of("appended")
    assert len(appended) == 80
    assert sorted(offset for call in appended for offset in call[2]) == list(range(80))
    durable = fake.of("committed")
    assert durable
    assert all(call[1] for call in durable)  # sqlite commits durably
    assert len(durable) <= 80  # some appends shared a commit, or none did


def test_reconstruct_snapshot_and_consumer_tries_are_reported() -> None:
    fake = FakeTelemetry()
    events = Workload(channels=1, turns=2).events()[:6]

    def fails_on_two(record: RecordedEvent) -> None:
        if record.offset == 2:
            raise RuntimeError("two")

    with chanlog.EventStore(plugins=host_with(fake=FakeProvider(fake))) as store:
        store.append_batch(events)
        store.snapshot()
        created = events[0]
        assert isinstance(created, chanlog.ObjectiveCreated)
        store.reconstruct("objective", created.objective_id)
        with store.bus.consumer("c", fails_on_two, max_deliver=2, backoff=[0.0]) as runner:
            runner.drain()
        shown = figures(store)
    assert fake.of("reconstructed") == [("reconstructed", "objective")]
    assert fake.of("snapshot") == [("snapshot", 6, True)]
    assert fake.of("failed") == [("failed", "c", 2, "RuntimeError")] * 2
    assert [call[2] for call in fake.of("handled")] == [0, 1, 3, 4, 5, 6]
    assert shown["records"] == 7
    assert shown["snapshots"]["count"] == 1
    assert shown["consumers"] == {"c": {"position": 7, "lag": 0, "handled": 6, "parked": 1}}


def test_refusal_rules() -> None:
    assert refusal_rule(RuntimeError("x")) is None
    assert refusal_rule(InvalidEvent("x")) == "invalid event"
    assert refusal_rule(InvalidEvent("x", rule="r")) == "r"
    assert refusal_rule(ConcurrencyError("x", stream="s", expected=1, actual=2)) == (
        "expected version"
    )


def test_an_object_without_weak_references_has_no_telemetry() -> None:
    assert telemetry_of(3) is None


def test_verify_is_reported_passed_or_failed(tmp_path: Path) -> None:
    fake = FakeTelemetry()
    path = tmp_path / "log.db"
    with chanlog.open(backend={"name": "sqlite", "path": str(path)}, projections=[]) as store:
        store.append_batch(sample_events(5))
    host = host_with(fake=FakeProvider(fake))
    backend = {"name": "sqlite", "path": str(path)}
    with chanlog.open(backend=backend, projections=[], plugins=host, read_only=True) as store:
        assert store.verify() == 5
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE events SET payload = CAST('{}' AS BLOB) WHERE position = 3")
    with (
        chanlog.open(backend=backend, projections=[], plugins=host, read_only=True) as store,
        pytest.raises(IntegrityError),
    ):
        store.verify()
    assert fake.of("verified") == [("verified", 5, None), ("verified", 3, "IntegrityError")]


def test_an_instrumented_store_is_freed_even_when_its_telemetry_refers_to_it() -> None:
    class Holding(FakeTelemetry):
        def __init__(self, store: Any) -> None:
            super().__init__()
            self.store = store

    class Provider(FakeProvider):
        def for_store(self, store: Any) -> FakeTelemetry:
            return Holding(store)  # kept by nobody but the store's instrumentation

    with chanlog.EventStore(plugins=host_with(p=Provider(None))) as store:
        assert isinstance(getattr(telemetry_of(store), "telemetry", None), Holding)
        freed = weakref.ref(store)
    del store
    gc.collect()
    assert freed() is None
