"""The instrumentation points (``chanlog.telemetry``, ADR 0035) with a fake implementation:
what a provider is asked, what the store's parts report, and that nothing is installed (or
wrapped) when no provider offers telemetry."""

from __future__ import annotations

import gc
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import chanlog
from chanlog.errors import ConcurrencyError, IntegrityError, InvalidEvent, InvalidTransition
from chanlog.plugins.hookspecs import hookimpl
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


class FakeConsumer:
    def __init__(self, calls: list[tuple[Any, ...]], name: str) -> None:
        self.calls = calls
        self.name = name

    @contextmanager
    def processing(self, record: RecordedEvent) -> Iterator[object]:
        try:
            yield self
        except Exception as exc:
            self.calls.append(("failed", self.name, record.offset, type(exc).__name__))
            raise
        self.calls.append(("handled", self.name, record.offset))


class FakeRelay:
    def published(self, record: RecordedEvent, subject: str) -> None:
        del record, subject


class FakeTelemetry:
    """Records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _add(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def appended(self, encoded: Any, result: Any, span: Any, commit: Any) -> None:
        assert span[0] <= span[1]
        if commit is not None:
            assert span[0] <= commit[0] <= commit[1] <= span[1]
        self._add("appended", len(encoded), [r.offset for r in result.records], commit is not None)

    def refused(self, rule: str, error: Exception, span: Any) -> None:
        self._add("refused", rule, type(error).__name__)

    def committed(self, span: Any, durable: bool) -> None:
        self._add("committed", durable)

    def reconstructed(self, kind: str, span: Any) -> None:
        self._add("reconstructed", kind)

    def verified(self, records: int, error: Exception | None, span: Any) -> None:
        self._add("verified", records, None if error is None else type(error).__name__)

    def snapshot_taken(self, snapshot: Any, span: Any) -> None:
        self._add("snapshot", snapshot.offset, len(snapshot.data) > 0)

    def consumer(self, name: str) -> FakeConsumer:
        return FakeConsumer(self.calls, name)

    def relay(self, consumer: str, system: str, stats: Callable[[], Mapping[str, Any]]) -> Any:
        return FakeRelay()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == kind]


class FakeProvider:
    def __init__(self, telemetry: FakeTelemetry | None) -> None:
        self.telemetry = telemetry
        self.asked: list[Any] = []

    def for_store(self, store: Any) -> FakeTelemetry | None:
        self.asked.append(store)
        return self.telemetry

    def serve_metrics(self, host: str, port: int) -> Callable[[], None]:
        raise NotImplementedError


def _host(**providers: FakeProvider) -> PluginHost:
    class Registers:
        @hookimpl
        def chanlog_register_telemetry(self, register: Callable[[str, Any], None]) -> None:
            for name, provider in providers.items():
                register(name, provider)

    host = PluginHost(load_entry_points=False)
    host.register(Registers(), "fake-telemetry")
    return host


def test_the_fakes_implement_the_protocols() -> None:
    fake = FakeTelemetry()
    assert isinstance(fake, StoreTelemetry)
    assert isinstance(fake.consumer("c"), ConsumerTelemetry)
    assert isinstance(FakeRelay(), RelayTelemetry)
    assert isinstance(FakeProvider(None), TelemetryProvider)


def test_nothing_is_installed_or_wrapped_when_no_provider_offers_telemetry() -> None:
    provider = FakeProvider(None)
    with chanlog.EventStore(plugins=_host(fake=provider)) as store:
        assert provider.asked == [store]
        assert telemetry_of(store) is None
        assert "write" not in vars(store.backend)
        assert "reconstruct" not in vars(store.reconstructor)
    with chanlog.EventStore(plugins=PluginHost(load_entry_points=False)) as plain:
        assert telemetry_of(plain) is None


def test_the_first_provider_by_name_that_offers_one_is_installed() -> None:
    first, second = FakeTelemetry(), FakeTelemetry()
    none = FakeProvider(None)
    host = _host(b=FakeProvider(second), a=FakeProvider(first), _none=none)
    with chanlog.EventStore(plugins=host) as store:
        assert telemetry_of(store) is first
    assert len(none.asked) == 1  # "_none" sorts first and offered none


def test_appends_commits_and_refusals_are_reported() -> None:
    fake = FakeTelemetry()
    events = Workload(channels=1, turns=2).events()
    with chanlog.EventStore(plugins=_host(fake=FakeProvider(fake))) as store:
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
    with chanlog.open(backend=backend, projections=[], plugins=_host(f=FakeProvider(fake))) as s:

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

    with chanlog.EventStore(plugins=_host(fake=FakeProvider(fake))) as store:
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
    host = _host(fake=FakeProvider(fake))
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

    with chanlog.EventStore(plugins=_host(p=Provider(None))) as store:
        assert isinstance(telemetry_of(store), Holding)
        freed = weakref.ref(store)
    del store
    gc.collect()
    assert freed() is None
