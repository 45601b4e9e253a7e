"""The ``nats`` broker: live subscriptions across processes, by subject pattern. Each test
has a prefix of its own; the subscriber processes are stopped when the test ends."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chanlog_nats import NatsBroker, headers_of

from chanlog import EventStore
from chanlog.records import RecordedEvent
from chanlog.testing import sample_events

pytestmark = pytest.mark.nats

CHILD = Path(__file__).with_name("broker_child.py")


def _prefix() -> str:
    return f"node-{uuid.uuid4().hex[:8]}"


def _subscriber(
    children: Any, url: str, prefix: str, count: int, pattern: str | None = None
) -> Any:
    arguments = [sys.executable, str(CHILD), url, prefix, str(count)]
    if pattern is not None:
        arguments.append(pattern)
    process = children.start(arguments, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _lines(process: Any) -> list[dict[str, Any]]:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    return [json.loads(line) for line in out.splitlines()]


def test_a_subscriber_in_another_process_receives_every_record_in_order(
    nats_url: str, children: Any
) -> None:
    prefix = _prefix()
    child = _subscriber(children, nats_url, prefix, 2000)
    with EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": nats_url}
    ) as store:
        events = sample_events(2000)
        for number in range(1000):
            store.append(events[number])
        store.append_batch(events[1000:])
        records = list(store.read_range(0, 2000))
        assert isinstance(store.bus.broker, NatsBroker)
    received = _lines(child)
    assert [line["offset"] for line in received] == list(range(2000))
    assert [line["id"] for line in received] == [r.event_id for r in records]
    assert [line["chain"] for line in received] == [r.chain_hash for r in records]


def test_a_remote_subscriber_gets_only_its_pattern(nats_url: str, children: Any) -> None:
    prefix = _prefix()
    with EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": nats_url}
    ) as store:
        events = sample_events(40)
        probe = EventStore(projections=[], bus_prefix=prefix)
        probe.append_batch(events)
        subject = probe.bus.subject_of(next(iter(probe.read_range(0, 1))))
        entity = subject.rsplit(".", 1)[1]
        wanted = [r.offset for r in probe.read_range(0, 40) if r.event.streams[0] == entity]
        pattern = f"{prefix}.messaging.*.{entity}"
        child = _subscriber(children, nats_url, prefix, len(wanted), pattern)
        store.append_batch(events)
    assert [line["offset"] for line in _lines(child)] == wanted


def test_in_process_subscriptions_go_through_nats_too(
    nats_url: str, wait_until: Callable[..., None]
) -> None:
    prefix = _prefix()
    got: list[int] = []
    with EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": nats_url}
    ) as store:
        store.subscribe(lambda record: got.append(record.offset))
        other: list[int] = []
        # two patterns: one NATS subscription, the receiver's own filter picks
        store.subscribe(
            lambda record: other.append(record.offset),
            subjects=[f"{prefix}.messaging.>", f"{prefix}.channel.>"],
        )
        store.append_batch(sample_events(30))
        wait_until(lambda: len(got) == 30 and len(other) == 30, 30, "live delivery")
        assert got == list(range(30)) == other
        assert store.bus.broker.published == 30  # type: ignore[attr-defined]


def test_a_tampered_live_message_is_dropped(nats_url: str, wait_until: Callable[..., None]) -> None:
    prefix = _prefix()
    got: list[RecordedEvent] = []
    source = EventStore(projections=[], bus_prefix=prefix)
    source.append_batch(sample_events(2))
    first, second = source.read_range(0, 2)
    with EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": nats_url}
    ) as store:
        store.subscribe(got.append)
        broker = store.bus.broker
        assert isinstance(broker, NatsBroker)

        async def send() -> None:
            client = broker._thread.client
            assert client is not None
            live = f"live.{source.bus.subject_of(first)}"
            await client.publish(live, second.event.canonical_json(), headers=headers_of(first))
            await client.publish(live, first.event.canonical_json(), headers=headers_of(first))
            await client.flush()

        broker._thread.call(send(), 10)
        wait_until(lambda: len(got) == 1, 10, "the genuine message")
        assert got[0].event_id == first.event_id
        assert broker.refused == 1


def test_publishing_never_raises_when_nats_is_unreachable(
    wait_until: Callable[..., None],
) -> None:
    with EventStore(
        projections=[],
        broker="nats",
        broker_options={"url": "nats://127.0.0.1:1", "connect_timeout": 0.2},
    ) as store:
        assert store.append_batch(sample_events(3)) == [0, 1, 2]
        broker: Any = store.bus.broker
        wait_until(lambda: broker.dropped == 3, 10, "the records to be counted as dropped")
        assert broker.published == 0
