"""A ``nats-relay`` reports through the store's telemetry (chanlog-nats does not depend on
OpenTelemetry: it asks :func:`chanlog.telemetry.telemetry_of`): sent and acknowledged
counts, its in-flight window and lag, and a ``publish`` span per record linked to the
append's. Needs NATS with JetStream (``CHANLOG_TEST_NATS_URL``)."""

from __future__ import annotations

import asyncio
import os
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
