"""The message mapping, the option checks and the plugin's registrations (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from chanlog_nats import NatsIngest, NatsRelay, headers_of, msg_id, read_envelope
from chanlog_nats.broker import NatsBroker

from chanlog import EventStore
from chanlog.bus.brokers import BusContext
from chanlog.errors import ConfigError, DecodeError
from chanlog.plugins import default_host
from chanlog.testing import sample_events


def _record() -> Any:
    store = EventStore(projections=[])
    store.append_batch(sample_events(3))
    return next(iter(store.read_range(2, 3)))


def test_headers_name_the_record_and_read_back() -> None:
    record = _record()
    headers = headers_of(record)
    assert headers["Nats-Msg-Id"] == f"{record.event_id}:2" == msg_id(record.event_id, 2)
    assert headers["Chanlog-Offset"] == "2"
    assert headers["Chanlog-Chain-Hash"] == record.chain_hash
    assert headers["Chanlog-Event-Type"] == "message-sent"
    envelope = read_envelope(headers)
    assert (envelope.event_id, envelope.offset, envelope.chain_hash, envelope.event_type) == (
        record.event_id,
        2,
        record.chain_hash,
        "message-sent",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Nats-Msg-Id": None}, "lacks the header"),
        ({"Nats-Msg-Id": "0x12:2"}, "malformed Nats-Msg-Id"),
        ({"Nats-Msg-Id": "abc"}, "malformed Nats-Msg-Id"),
        ({"Chanlog-Offset": "3"}, "disagrees"),
        ({"Chanlog-Chain-Hash": "0xzz"}, "malformed Chanlog-Chain-Hash"),
        ({"Chanlog-Event-Type": ""}, "empty Chanlog-Event-Type"),
    ],
)
def test_malformed_headers_are_decode_errors(change: dict[str, str | None], message: str) -> None:
    headers: dict[str, str] = headers_of(_record())
    for key, value in change.items():
        if value is None:
            del headers[key]
        else:
            headers[key] = value
    with pytest.raises(DecodeError, match=message):
        read_envelope(headers)


def test_no_headers_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no headers"):
        read_envelope(None)


def test_the_plugin_registers_relay_broker_and_ingest() -> None:
    host = default_host()
    assert host.handlers["nats-relay"] is NatsRelay
    assert host.brokers["nats"] is NatsBroker
    assert host.ingest_sources["nats"] is NatsIngest


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "stream is required"),
        ({"stream": "a.b"}, "stream must be"),
        ({"stream": "S", "url": "http://x"}, "url must be"),
        ({"stream": "S", "window": 0}, "window must be an int >= 1"),
        ({"stream": "S", "window": "many"}, "window must be"),
        ({"stream": "S", "storage": "disk"}, "storage must be one of file, memory"),
        ({"stream": "S", "duplicate_window": -1}, "duplicate_window must be"),
        ({"stream": "S", "prefix": "a b"}, "prefix"),
        ({"stream": "S", "colour": "red"}, "no option 'colour'"),
        ({"streem": "S"}, "no option 'streem'"),  # a typo, not "stream is required"
    ],
)
def test_relay_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NatsRelay(**options)


def test_relay_options_accept_text_from_the_command_line() -> None:
    relay = NatsRelay(stream="S", window="16", ack_timeout="2.5")
    assert relay.window == 16
    assert "S" in repr(relay)
    relay.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"durable": "d"}, "stream is required"),
        ({"stream": "S"}, "durable is required"),
        ({"stream": "S", "durable": "d", "mirror": "maybe"}, "mirror must be true or false"),
        ({"stream": "S", "durable": "d", "batch": -3}, "batch must be"),
        ({"stream": "S", "durable": "d", "filter_subject": ""}, "filter_subject"),
        ({"stream": "S", "durable": "d", "speed": 1}, "no option 'speed'"),
        ({"streem": "S", "durable": "d"}, "no option 'streem'"),  # a typo, not "required"
    ],
)
def test_ingest_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NatsIngest(name="x", **options)


def test_ingest_flags_accept_text() -> None:
    ingest = NatsIngest(name="x", stream="S", durable="d", mirror="false", batch="10")
    assert (ingest.mirror, ingest.batch) == (False, 10)
    assert ingest.stats() == {
        "appended": 0,
        "duplicates": 0,
        "parked": 0,
        "lag": None,
        "last_error": None,
        "retrying": False,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": 5}, "url must be"),
        ({"live_prefix": "a..b"}, "live_prefix"),
        ({"colour": "red"}, "no option 'colour'"),
    ],
)
def test_broker_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NatsBroker(context=BusContext(sender=object(), decode=lambda *a: None), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        b"Nats-Msg-Id: 0xab:1\r\nChanlog-Offset: 1\r\n\r\n",
        b"A:b\r\nC:\tspaced \r\nno colon here\r\n\r\n",
        b"Bad Key: x\r\nGood: y\r\n",
        b"K\xc3\xa9y: x\r\nV: caf\xc3\xa9 \xff\r\n",
        b"Dup: 1\r\nDup: 2\r\n: empty name\r\n",
        b"",
    ],
)
def test_the_quick_header_parser_agrees_with_nats_py(raw: bytes) -> None:
    from chanlog_nats.client import FastHeaderClient
    from nats.aio.client import Client

    assert FastHeaderClient._parse_header_lines(raw) == Client._parse_header_lines(raw)
