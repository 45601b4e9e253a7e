"""A ``nats-relay`` reports through the store's telemetry (chanlog-nats does not depend on
OpenTelemetry: it asks :func:`chanlog.telemetry.telemetry_of`): sent and acknowledged
counts, its in-flight window and lag, and a ``publish`` span per record linked to the
append's. Needs NATS with JetStream (``CHANLOG_TEST_NATS_URL``)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

import pytest

import chanlog
from chanlog.plugins.host import PluginHost
from chanlog.testing import sample_events

nats_relay = pytest.importorskip("chanlog_nats")
nats = pytest.importorskip("nats")


@pytest.fixture
def nats_url() -> str:
    url = os.environ.get("CHANLOG_TEST_NATS_URL", "").strip() or "nats://127.0.0.1:4222"

    async def probe() -> None:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        await client.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        if os.environ.get("CHANLOG_REQUIRE_NATS") == "1":
            pytest.fail(f"NATS at {url} cannot be reached: {exc!r}")
        pytest.skip(f"NATS at {url} cannot be reached: {exc!r}")
    return url


def _delete_stream(url: str, name: str) -> None:
    async def work() -> None:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await client.jetstream().delete_stream(name)
        finally:
            await client.close()

    asyncio.run(work())


def test_a_relay_reports_sent_acknowledged_in_flight_and_lag(
    host: PluginHost, sdk: Any, nats_url: str
) -> None:
    unique = uuid.uuid4().hex[:10]
    stream = f"TEST_OTEL_{unique.upper()}"
    prefix = f"otel{unique}"  # subjects no other test's stream captures
    relay = nats_relay.NatsRelay(stream=stream, url=nats_url, storage="memory", window=8)
    try:
        with chanlog.EventStore(plugins=host, projections=[], bus_prefix=prefix) as store:
            offsets = store.append_batch(sample_events(20))
            with store.bus.consumer("to-nats", relay) as runner:
                runner.drain()
                assert relay.settle(30)
                runner.flush()
            who = {"messaging.system": "nats", "messaging.consumer.group.name": "to-nats"}
            assert sdk.total("chanlog.relay.sent", **who) == 20
            assert sdk.total("chanlog.relay.acknowledged", **who) == 20
            assert sdk.total("chanlog.relay.in_flight", **who) == 0
            assert sdk.total("chanlog.relay.lag", **who) == 0
    finally:
        relay.close()
        _delete_stream(nats_url, stream)
    publishes = [
        span
        for span in sdk.spans.get_finished_spans()
        if span.attributes.get("messaging.system") == "nats"
    ]
    assert [span.attributes["chanlog.offset"] for span in publishes] == offsets
    (batch,) = [s for s in sdk.spans.get_finished_spans() if s.name == f"publish {prefix}"]
    assert all(
        [link.context.span_id for link in span.links] == [batch.context.span_id]
        for span in publishes
    )
    assert all(span.name.startswith(f"publish {prefix}.") for span in publishes)


def _ingest_into(replica: Any, stream: str, url: str, batch: int, until: int) -> None:
    """Run a ``nats`` ingest into ``replica`` until it holds ``until`` records."""
    ingest = nats_relay.NatsIngest(
        name="replica", stream=stream, durable=f"replica{batch}", url=url, batch=batch
    )
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(replica, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(replica) < until and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert len(replica) == until, ingest.stats()
    assert ingest.stats()["parked"] == 0, ingest.stats()


@pytest.mark.parametrize("batch", [1, 16])
def test_a_records_trace_goes_on_in_the_process_that_ingests_it(
    host: PluginHost, sdk: Any, nats_url: str, batch: int
) -> None:
    unique = uuid.uuid4().hex[:10]
    stream = f"TEST_OTEL_{unique.upper()}"
    relay = nats_relay.NatsRelay(
        stream=stream, url=nats_url, storage="memory", prefix=f"otel{unique}"
    )
    try:
        with chanlog.EventStore(plugins=host, projections=[]) as node:
            node.append_batch(sample_events(5))
            with node.bus.consumer("to-nats", relay) as runner:
                runner.drain()
                assert relay.settle(30)
        sent = {
            span.attributes["messaging.message.id"]: span
            for span in sdk.spans.get_finished_spans()
            if span.name.startswith(f"publish otel{unique}.")
        }
        assert len(sent) == 5
        sdk.spans.clear()
        with chanlog.EventStore(plugins=host, projections=[]) as replica:
            _ingest_into(replica, stream, nats_url, batch, 5)
    finally:
        relay.close()
        _delete_stream(nats_url, stream)

    spans = sdk.spans.get_finished_spans()
    processed = [span for span in spans if span.name == f"process {stream}"]
    appends = [span for span in spans if span.name == "publish chanlog"]
    assert processed
    assert len(appends) == len(processed)
    by_id = {span.context.span_id: span for span in processed}
    for append in appends:  # each append of the replica is in the span of what it received
        assert append.parent is not None
        assert append.parent.span_id in by_id
        assert append.context.trace_id == by_id[append.parent.span_id].context.trace_id
    if batch == 1:  # one message at a time: its trace goes on
        continued = {span.parent.span_id for span in processed if span.parent is not None}
        assert continued == {span.context.span_id for span in sent.values()}
        assert {span.context.trace_id for span in processed} == {
            span.context.trace_id for span in sent.values()
        }
        assert all(span.parent.is_remote for span in processed if span.parent is not None)
    else:  # a batch: linked to each message it holds
        linked = {link.context.span_id for span in processed for link in span.links}
        assert linked == {span.context.span_id for span in sent.values()}
        assert sum(span.attributes["messaging.batch.message_count"] for span in processed) == 5
    assert all(span.attributes["messaging.system"] == "nats" for span in processed)
