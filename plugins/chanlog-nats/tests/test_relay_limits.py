"""A record larger than the NATS server's ``max_payload`` (ADR 0075): no retry can publish
it, and a relay publishes every record in order, so the relay stops at it, saying which
record, how large, the server's limit and the remedy, where ``chanlog run`` and
``chanlog consumers`` show it; and it goes on once the server takes the record.

Each test has a server of its own: the shared server's ``max_payload`` is not the test's."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import chanlog_nats.plugin
import pytest
from chanlog_nats import NatsBroker, NatsRelay, read_envelope

from chanlog import EventStore
from chanlog.testing import sample_events
from chanlog.testing.plugins import DocumentNoted, refusing_host

pytestmark = pytest.mark.nats

Wait = Callable[[Callable[[], bool], float, str], None]
DEFAULT_MAX_PAYLOAD = 1024 * 1024


def _log_with_a_large_record(body_bytes: int) -> tuple[EventStore, DocumentNoted]:
    """Two records, one whose payload is ``body_bytes`` long and more, one after it."""
    store = EventStore(plugins=refusing_host(), projections=[])
    store.append_batch(sample_events(2))
    large = DocumentNoted(entity="e", body="x" * body_bytes, timestamp_ms=1)
    store.append(large)
    store.append_batch(sample_events(1, start=2))
    return store, large


@pytest.mark.parametrize(
    ("body_bytes", "refused_by"),
    [
        (DEFAULT_MAX_PAYLOAD + 1, "the payload alone"),
        # The payload fits, not with its headers: the server, not the client, would refuse it.
        (DEFAULT_MAX_PAYLOAD - 100, "the payload with its headers"),
    ],
)
def test_a_record_over_max_payload_stops_the_relay_at_it_saying_so_then_it_goes_on(
    private_server: Any,
    streams: Any,
    wait_until: Wait,
    caplog: pytest.LogCaptureFixture,
    body_bytes: int,
    refused_by: str,
) -> None:
    del refused_by  # the id of the case
    store, large = _log_with_a_large_record(body_bytes)
    size = len(large.canonical_json())
    streams.url = private_server.url
    stream = streams.name()
    relay = NatsRelay(
        stream=stream, url=private_server.url, storage="file", prefix=streams.prefix(stream)
    )
    caplog.set_level(logging.DEBUG, logger="chanlog.nats")
    with store, store.bus.consumer("relay", relay, lease_ttl=0.5) as runner:
        drained = threading.Thread(target=runner.drain, daemon=True)
        drained.start()

        def failure() -> str:
            return relay.failure() or ""

        wait_until(
            lambda: failure().startswith("the record at offset 2 cannot be published"),
            20,
            "the relay to name the record",
        )
        said = failure()
        assert f"max_payload of {DEFAULT_MAX_PAYLOAD} bytes" in said
        assert "raise max_payload" in said
        # The two records before it were sent first; their acknowledgements may come after
        # the failure is named.
        wait_until(lambda: relay.stats()["published"] == 2, 20, "the records before it")
        # It stays the failure (a reconciliation does not clear it) and is said once, not
        # at every retry.
        reconciled = relay.stats()["reconciliations"]
        wait_until(lambda: relay.stats()["reconciliations"] >= reconciled + 2, 20, "two more tries")
        assert failure() == said
        lines = [r for r in caplog.records if "offset 2" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert lines[0].levelno == logging.ERROR
        assert str(size) in lines[0].getMessage()
        wait_until(
            lambda: store.bus.consumers.info("relay").state.last_error == said,
            20,
            "chanlog consumers to show it",
        )
        messages = streams.messages(stream)
        assert [read_envelope(m.headers).offset for m in messages] == [0, 1]

        # The remedy: a server that takes the record. The relay goes on, in order.
        private_server.stop()
        private_server.max_payload = 8 * DEFAULT_MAX_PAYLOAD
        private_server.start()
        wait_until(lambda: relay.stats()["published"] >= 4, 30, "the rest to be published")
        assert relay.settle(30)
        drained.join(30)
        runner.flush()
        assert relay.failure() is None
        messages = streams.messages(stream)
        assert [read_envelope(m.headers).offset for m in messages] == [0, 1, 2, 3]
        assert messages[2].data == large.canonical_json()


def test_a_record_over_the_streams_max_msg_size_stops_the_relay_at_it_saying_so(
    streams: Any, wait_until: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream an operator limited (``max_msg_size``) refuses the record in its
    acknowledgement: no retry can store it either."""
    store, _ = _log_with_a_large_record(2000)
    stream = streams.name()
    prefix = streams.prefix(stream)

    async def limited(js: Any) -> None:
        await js.add_stream(
            name=stream, subjects=[f"{prefix}.>"], storage="memory", max_msg_size=1000
        )

    streams.call(limited)
    relay = NatsRelay(stream=stream, url=streams.url, storage="memory", prefix=prefix)
    caplog.set_level(logging.DEBUG, logger="chanlog.nats")
    with store, store.bus.consumer("relay", relay, lease_ttl=0.5) as runner:
        threading.Thread(target=runner.drain, daemon=True).start()
        wait_until(
            lambda: (relay.failure() or "").startswith("the record at offset 2 cannot be"),
            20,
            "the relay to name the record",
        )
        said = relay.failure()
        assert said is not None
        assert f"the stream {stream} refuses it (message size exceeds" in said
        assert "raise the stream's max_msg_size" in said
        reconciled = relay.stats()["reconciliations"]
        wait_until(lambda: relay.stats()["reconciliations"] >= reconciled + 2, 20, "two more tries")
        assert relay.failure() == said
        assert len([r for r in caplog.records if "offset 2" in r.getMessage()]) == 1
        assert [read_envelope(m.headers).offset for m in streams.messages(stream)] == [0, 1]
        relay.interrupt()


def test_the_broker_does_not_publish_live_a_record_over_max_payload_and_says_so(
    private_server: Any, wait_until: Wait, caplog: pytest.LogCaptureFixture
) -> None:
    """Live delivery is best effort (subscribers fill a gap from the log), but a message the
    server refuses for its size must not cost the connection, and the others with it."""
    caplog.set_level(logging.DEBUG, logger="chanlog.nats")
    host = refusing_host()
    host.register(chanlog_nats.plugin, name="chanlog-nats")
    with EventStore(
        plugins=host,
        projections=[],
        broker="nats",
        bus_prefix=f"node-{uuid.uuid4().hex[:8]}",
        broker_options={"url": private_server.url},
    ) as store:
        broker = store.bus.broker
        assert isinstance(broker, NatsBroker)
        store.append_batch(sample_events(2))
        # The payload fits, not with its headers: the server would close the connection.
        large = DocumentNoted(entity="e", body="x" * (DEFAULT_MAX_PAYLOAD - 100), timestamp_ms=1)
        store.append(large)
        store.append_batch(sample_events(1, start=2))
        wait_until(lambda: broker.published + broker.dropped >= 4, 20, "every record's turn")
        assert (broker.published, broker.dropped) == (3, 1)
        said = [r.getMessage() for r in caplog.records if "offset 2" in r.getMessage()]
        assert len(said) == 1
        assert f"max_payload of {DEFAULT_MAX_PAYLOAD} bytes" in said[0]
