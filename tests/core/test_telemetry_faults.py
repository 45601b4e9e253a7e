"""A telemetry that raises changes nothing the store, a consumer or a relay does (ADR 0073):
an append that committed is reported committed, a refused one is refused for its own reason,
no record is lost, parked or delivered twice, and the failure is logged once per point, then
once when it stops (not at every event)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import chanlog
from chanlog.errors import IntegrityError, InvalidTransition
from chanlog.events import Event, ObjectiveCreated
from chanlog.records import RecordedEvent
from chanlog.telemetry import ContinuesTraces, telemetry_of
from chanlog.testing import sample_events
from chanlog.workload.generator import Workload
from fake_telemetry import BrokenTelemetry, FakeProvider, host_with

STORE_POINTS = ("appended", "refused", "committed", "reconstructed", "snapshot_taken")


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Each backend (SQLite: durability full, so its appends are grouped)."""
    if request.param == "memory":
        return {"name": "memory"}
    return {"name": "sqlite", "path": str(tmp_path / "log.db"), "durability": "full"}


def _open(backend: dict[str, Any], telemetry: Any, **options: Any) -> chanlog.EventStore:
    return chanlog.open(
        backend=backend, plugins=host_with(broken=FakeProvider(telemetry)), **options
    )


def _objective_of(events: list[Event]) -> str:
    """The objective a workload's first event creates."""
    first = events[0]
    assert isinstance(first, ObjectiveCreated)
    return first.objective_id


def _consistent(store: chanlog.EventStore, objective: str) -> None:
    """The store's state is the log's: its projections' state is the one folded afresh."""
    assert store.state("objective", objective) == store.reconstruct("objective", objective)


@pytest.mark.parametrize("point", ["appended", "committed"])
def test_an_append_that_committed_is_reported_committed(
    backend: dict[str, Any], point: str
) -> None:
    events = Workload(channels=1, turns=2).events()
    seen: list[int] = []
    with _open(backend, BrokenTelemetry(point)) as store:
        store.subscribe(lambda record: seen.append(record.offset))
        assert store.append(events[0]) == 0
        assert store.append_batch(events[1:4]) == [1, 2, 3]
        assert len(store) == 4
        _consistent(store, _objective_of(events))
        assert seen == [0, 1, 2, 3]


def test_a_refused_append_is_refused_for_its_own_reason(backend: dict[str, Any]) -> None:
    events = Workload(channels=1, turns=2).events()
    with _open(backend, BrokenTelemetry(*STORE_POINTS)) as store:
        store.append(events[0])
        with pytest.raises(InvalidTransition):
            store.append(events[6])  # a state signed before its channel exists
        assert len(store) == 1


def test_a_group_commit_reports_every_caller_committed(tmp_path: Path) -> None:
    backend = {"name": "sqlite", "path": str(tmp_path / "log.db"), "durability": "full"}
    events = sample_events(160)
    offsets: list[int] = []
    failures: list[BaseException] = []
    seen: list[int] = []
    lock = threading.Lock()
    with _open(backend, BrokenTelemetry("appended", "committed"), projections=[]) as store:
        store.subscribe(lambda record: seen.append(record.offset))

        def write(part: list[Any]) -> None:
            for event in part:
                try:
                    offset = store.append(event)
                except Exception as exc:
                    with lock:
                        failures.append(exc)
                else:
                    with lock:
                        offsets.append(offset)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, [events[i::8] for i in range(8)]))
        assert [repr(error) for error in failures] == []
        assert sorted(offsets) == list(range(160))
        assert len(store) == 160
    assert sorted(seen) == list(range(160))


def test_snapshots_reconstructions_and_verifies_go_on(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    backend = {"name": "sqlite", "path": str(path)}
    events = Workload(channels=1, turns=2).events()[:6]
    broken = BrokenTelemetry("snapshot_taken", "reconstructed", "verified")
    with _open(backend, broken) as store:
        store.append_batch(events)
        assert store.snapshot().offset == 6
        assert store.reconstruct("objective", _objective_of(events)) is not None
        assert store.verify() == 7  # and the snapshot's record
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE events SET payload = CAST('{}' AS BLOB) WHERE position = 3")
    with _open(backend, broken, read_only=True) as store, pytest.raises(IntegrityError):
        store.verify()


def test_a_consumer_does_not_park_a_record_its_telemetry_failed_on() -> None:
    events = Workload(channels=1, turns=2).events()[:6]
    handled: list[int] = []
    for point in ("consumer", "processing", "processed"):
        handled.clear()
        with _open({"name": "memory"}, BrokenTelemetry(point)) as store:
            store.append_batch(events)
            with store.bus.consumer("c", lambda r: handled.append(r.offset), max_deliver=1) as run:
                run.drain()
            (info,) = store.bus.consumers.infos()
        assert (point, handled, info.state.parked) == (point, list(range(6)), 0)


def test_a_telemetry_cannot_make_a_failed_try_handled() -> None:
    events = Workload(channels=1, turns=2).events()[:2]

    def fails(record: RecordedEvent) -> None:
        if record.offset == 1:
            raise RuntimeError("the handler's own failure")

    with _open({"name": "memory"}, BrokenTelemetry("swallow")) as store:
        store.append_batch(events)
        with store.bus.consumer("c", fails, max_deliver=1) as runner:
            runner.drain()
        (info,) = store.bus.consumers.infos()
    assert info.state.parked == 1


def test_a_relay_and_an_ingest_go_on_when_their_telemetry_fails() -> None:
    broken = BrokenTelemetry("published", "received")
    with _open({"name": "memory"}, broken, projections=[]) as store:
        store.append_batch(sample_events(1))
        telemetry = telemetry_of(store)
        assert isinstance(telemetry, ContinuesTraces)
        record = next(iter(store.read_range(0, 1)))
        relay = telemetry.relay("to-nats", "nats", dict)
        assert relay.published(record, "chanlog.x") is None
        with telemetry.received("nats", "NODE", [None]):
            store.append_batch(sample_events(2)[1:])
        assert len(store) == 2
    for broken_at in ("relay", "headers"):
        with _open({"name": "memory"}, BrokenTelemetry(broken_at), projections=[]) as store:
            telemetry = telemetry_of(store)
            assert telemetry is not None
            assert telemetry.relay("to-nats", "nats", dict).published(record, "x") is None


def test_a_provider_that_raises_at_open_leaves_the_store_uninstrumented(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Raising(FakeProvider):
        def for_store(self, store: Any) -> Any:
            raise RuntimeError("no telemetry today")

    backend = {"name": "sqlite", "path": str(tmp_path / "log.db")}
    host = host_with(raising=Raising(None))
    with caplog.at_level(logging.ERROR, "chanlog.telemetry"):
        for _ in range(2):
            with chanlog.open(backend=backend, projections=[], plugins=host) as store:
                assert telemetry_of(store) is None
                store.append_batch(sample_events(1))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "chanlog.telemetry"]
    assert line.startswith(
        "telemetry provider 'raising' (registered by plugin 'fake-telemetry') at for_store "
        "failed (RuntimeError: no telemetry today)"
    )


def test_a_failing_telemetry_is_said_once_per_point_and_once_when_it_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = sample_events(40)
    broken = BrokenTelemetry("appended", "committed")
    with (
        caplog.at_level(logging.INFO, "chanlog.telemetry"),
        _open({"name": "memory"}, broken, projections=[]) as s,
    ):
        for event in events[:20]:
            s.append(event)
        broken.broken.clear()
        for event in events[20:]:
            s.append(event)
        assert len(s) == 40
    who = "telemetry provider 'broken' (registered by plugin 'fake-telemetry')"
    lines = [r for r in caplog.records if r.name == "chanlog.telemetry"]
    assert [(r.levelname, r.getMessage().split(" (Runtime")[0]) for r in lines] == [
        ("ERROR", f"{who} at committed failed"),
        ("ERROR", f"{who} at appended failed"),
        ("WARNING", f"{who} at committed works again, after 20 failed tries over 0 s"),
        ("WARNING", f"{who} at appended works again, after 20 failed tries over 0 s"),
    ]
    assert lines[0].exc_info is not None  # the traceback says where in the telemetry
