"""Spans and in-process metrics with the OpenTelemetry SDK's in-memory exporters: one append
and one consumer's handling of its record are linked by the event id."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import chanlog
from chanlog.errors import InvalidTransition
from chanlog.plugins.host import PluginHost
from chanlog.records import RecordedEvent
from chanlog.telemetry import telemetry_of
from chanlog.workload.generator import Workload


def _events(count: int) -> list[Any]:
    """The first ``count`` events of a channel's life: objective-created, message-sent..."""
    return Workload(channels=1, turns=2).events()[:count]


def _spans(sdk: Any, prefix: str) -> list[Any]:
    return [span for span in sdk.spans.get_finished_spans() if span.name.startswith(prefix)]


def test_an_append_and_its_handling_are_linked_by_the_event_id(host: PluginHost, sdk: Any) -> None:
    event = _events(1)[0]
    handled: list[RecordedEvent] = []
    with chanlog.EventStore(plugins=host) as store:
        assert telemetry_of(store) is not None
        offset = store.append(event)
        with store.bus.consumer("audit", handled.append) as runner:
            runner.drain()
    assert [record.offset for record in handled] == [offset]

    (append,) = _spans(sdk, "publish ")
    (process,) = _spans(sdk, "process ")
    (commit,) = _spans(sdk, "chanlog commit")
    assert append.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert append.attributes["messaging.system"] == "chanlog"
    assert append.attributes["messaging.operation.name"] == "publish"
    assert process.attributes["messaging.operation.name"] == "process"
    assert process.attributes["messaging.consumer.group.name"] == "audit"
    # The same message id (the event id) and offset on both; the subject as destination.
    assert append.attributes["messaging.message.id"] == event.event_id
    assert process.attributes["messaging.message.id"] == event.event_id
    assert append.attributes["chanlog.offset"] == process.attributes["chanlog.offset"] == offset
    assert append.attributes["messaging.destination.name"].startswith("chanlog.")
    assert (
        process.attributes["messaging.destination.name"]
        == append.attributes["messaging.destination.name"]
    )
    # The handling's span links to the append's, which is the commit's parent.
    assert [link.context.span_id for link in process.links] == [append.context.span_id]
    assert commit.parent is not None
    assert commit.parent.span_id == append.context.span_id
    assert append.start_time <= commit.start_time <= commit.end_time <= append.end_time

    assert sdk.total("chanlog.appends") == 1
    assert sdk.total("chanlog.appended.events") == 1
    assert sdk.total("chanlog.consumer.handled", **{"messaging.consumer.group.name": "audit"}) == 1


def test_a_failing_handler_counts_failures_and_marks_its_span(host: PluginHost, sdk: Any) -> None:
    def fails(record: RecordedEvent) -> None:
        raise RuntimeError(f"no {record.offset}")

    with chanlog.EventStore(plugins=host) as store:
        store.append_batch(_events(2))
        with store.bus.consumer("broken", fails, max_deliver=2, backoff=[0.0]) as runner:
            runner.drain()
        assert store.bus.consumers.state("broken").parked == 2
        # Gauges are read from the store's backend when collected (while it is open).
        assert (
            sdk.total("chanlog.consumer.parked", **{"messaging.consumer.group.name": "broken"}) == 2
        )
        assert sdk.total("chanlog.consumer.lag", **{"messaging.consumer.group.name": "broken"}) == 0
    processes = _spans(sdk, "process broken")
    assert len(processes) == 4  # two records, two tries each
    assert all(span.status.status_code is StatusCode.ERROR for span in processes)
    assert all(len(span.events) == 1 for span in processes)  # the exception, recorded once
    assert processes[0].events[0].attributes["exception.type"] == "RuntimeError"
    assert sdk.total("chanlog.consumer.failures") == 4
    (batch,) = _spans(sdk, "publish ")
    assert batch.attributes["messaging.batch.message_count"] == 2
    assert sdk.total("chanlog.appends", **{"chanlog.append.kind": "batch"}) == 1


def test_refusals_are_counted_by_rule(host: PluginHost, sdk: Any) -> None:
    first, second = _events(2)
    with chanlog.EventStore(plugins=host) as store:
        with pytest.raises(InvalidTransition) as refused:
            store.append(second)  # its channel does not exist yet
        with pytest.raises(chanlog.InvalidEvent):
            store.append({"type": "no-such-type", "payload": {}})
        store.append(first)
        with pytest.raises(chanlog.ConcurrencyError):
            store.append(second, expected_version=7)
    assert sdk.total("chanlog.append.refusals", **{"chanlog.rule": refused.value.rule}) == 1
    assert sdk.total("chanlog.append.refusals", **{"chanlog.rule": "expected version"}) == 1
    assert sdk.total("chanlog.append.refusals") == 3
    assert sdk.total("chanlog.appends") == 1


def test_commits_reconstructions_and_snapshots_are_measured(
    host: PluginHost, sdk: Any, tmp_path: Any
) -> None:
    events = _events(3)
    backend = {"name": "sqlite", "path": str(tmp_path / "log.db")}
    with chanlog.open(backend=backend, plugins=host) as store:
        store.append_batch(events)
        store.snapshot()
        store.reconstruct("objective", events[0].objective_id)
        assert store.verify() == 4
        assert sdk.total("chanlog.verify.runs", **{"chanlog.verify.result": "ok"}) == 1
        (last,) = sdk.points()["chanlog.verify.last_success"]
        assert last.value > 1.7e9  # Unix time, in seconds
        assert sdk.total("chanlog.snapshots.stored") == 1
        assert sdk.total("chanlog.log.records") == 4  # the batch and snapshot-created
    points = sdk.points()
    assert points["chanlog.commit.duration"][0].count == 2  # the batch, the snapshot
    assert sdk.total("chanlog.commit.fsyncs") == 2  # sqlite commits durably
    assert points["chanlog.reconstruct.duration"][0].count == 1
    assert points["chanlog.snapshot.duration"][0].count == 1
    assert points["chanlog.snapshot.size"][0].sum > 0
    assert _spans(sdk, "chanlog reconstruct")
    assert _spans(sdk, "chanlog snapshot")
