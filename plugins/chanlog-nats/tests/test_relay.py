"""The ``nats-relay`` handler against the test server: order, headers, the stream's
configuration, reconciliation at start, the order guard and duplicates.

Each stream has subjects of its own (``make_relay`` gives each relay its stream's prefix);
the default prefix is tested on a server of the test's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chanlog_nats import NatsRelay, read_envelope

from chanlog import EventStore
from chanlog.bus.subjects import subject_of
from chanlog.errors import ConfigError, IntegrityError
from chanlog.testing import sample_events

pytestmark = pytest.mark.nats


@pytest.fixture
def make_relay(nats_url: str, streams: Any) -> Iterator[Callable[..., NatsRelay]]:
    """Builds relays on the test server, with their stream's prefix unless told otherwise
    (``prefix=None``: the store's); they are closed before the streams are deleted."""
    made: list[NatsRelay] = []

    def make(stream: str, **options: Any) -> NatsRelay:
        options.setdefault("storage", "memory")
        options.setdefault("prefix", streams.prefix(stream))
        relay = NatsRelay(stream=stream, url=nats_url, **options)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.close()


def _store(count: int) -> EventStore:
    store = EventStore(projections=[])
    store.append_batch(sample_events(count))
    return store


def _relay_all(store: EventStore, relay: NatsRelay, name: str = "relay", **settings: Any) -> None:
    with store.bus.consumer(name, relay, **settings) as runner:
        runner.drain()
        assert relay.settle(30)
        runner.flush()


def test_every_record_once_in_offset_order_with_its_headers(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(300)
    stream = streams.name()
    relay = make_relay(stream, window=16)
    _relay_all(store, relay)
    info = streams.info(stream)
    prefix = streams.prefix(stream)
    assert info.config.subjects == [f"{prefix}.>"]
    assert info.config.duplicate_window == 120
    messages = streams.messages(stream)
    assert [m.seq for m in messages] == list(range(1, 301))
    records = list(store.read_range(0, 300))
    for message, record in zip(messages, records, strict=True):
        envelope = read_envelope(message.headers)
        assert envelope.offset == record.offset
        assert envelope.event_id == record.event_id
        assert envelope.chain_hash == record.chain_hash
        assert message.data == record.event.canonical_json()
        assert message.subject == subject_of(record, prefix)
    assert store.bus.consumers.info("relay").lag == 0
    assert relay.stats()["published"] == 300
    assert relay.stats()["in_flight"] == 0


def test_a_restarted_relay_starts_after_the_streams_last_record(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(200)
    stream = streams.name()
    # The first relay published everything, but its positions were never committed (a
    # crash right after the PubAcks): a new consumer starting at 0 must not republish.
    _relay_all(store, make_relay(stream), name="first")
    second = make_relay(stream)
    assert second.position("second") == 200
    store.append_batch(sample_events(5, start=200))
    _relay_all(store, second, name="second")
    assert streams.info(stream).state.messages == 205
    assert [read_envelope(m.headers).offset for m in streams.messages(stream)] == list(range(205))
    assert second.stats()["published"] == 5


def test_records_the_stream_already_holds_are_done_without_a_publish(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(50)
    stream = streams.name()
    _relay_all(store, make_relay(stream), name="first")
    # No TracksPosition here: the runner hands every record again, from offset 0.
    relay = make_relay(stream)
    relay.bind(store, "again")
    for record in store.read_range(0, 50):
        relay(record)
    assert relay.settle(10)
    assert relay.settled() is None
    assert streams.info(stream).state.messages == 50
    assert relay.stats()["published"] == 0


def test_a_second_relay_racing_the_first_is_refused_by_the_server(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(400)
    stream = streams.name()
    one, two = make_relay(stream, window=8), make_relay(stream, window=8)
    one.bind(store, "one")
    two.bind(store, "two")
    for record in store.read_range(0, 400):
        one(record)
        two(record)
    assert one.settle(30)
    assert two.settle(30)
    messages = streams.messages(stream, headers_only=True)
    assert [read_envelope(m.headers).offset for m in messages] == list(range(400))


def test_a_stream_with_other_subjects_fails_the_start(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    stream = streams.name()
    elsewhere = f"elsewhere.{streams.prefix(stream)}.>"
    streams.add(stream, [elsewhere])
    relay = make_relay(stream)
    with pytest.raises(ConfigError, match=rf"exists with subjects \['{elsewhere}'\]"):
        relay.bind(_store(1), "relay")


def test_a_stream_whose_subjects_another_stream_captures_fails_the_start(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    """Before, the server's refusal (subjects overlap) was taken for NATS being away: the
    relay waited for ever, saying NATS could not be reached."""
    other = streams.name()
    streams.add(other, [f"{streams.prefix(other)}.>"])
    relay = make_relay(streams.name(), prefix=streams.prefix(other))
    with pytest.raises(ConfigError, match=rf"the stream {other} on the server already captures"):
        relay.bind(_store(1), "relay")


def test_a_stream_in_other_storage_fails_the_start(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    stream = streams.name()
    streams.add(stream, [f"{streams.prefix(stream)}.>"])  # memory storage
    relay = make_relay(stream, storage="file")
    with pytest.raises(ConfigError, match="memory storage, not file"):
        relay.bind(_store(1), "relay")


def test_an_existing_streams_duplicate_window_is_updated(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    stream = streams.name()
    streams.add(stream, [f"{streams.prefix(stream)}.>"])
    make_relay(stream, duplicate_window=30).bind(_store(1), "relay")
    assert streams.info(stream).config.duplicate_window == 30


def test_the_prefix_comes_from_the_store_or_the_options(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    stream = streams.name()
    node = streams.prefix(stream)
    store = EventStore(projections=[], bus_prefix=node)
    store.append_batch(sample_events(3))
    _relay_all(store, make_relay(stream, prefix=None))
    assert streams.info(stream).config.subjects == [f"{node}.>"]
    assert all(m.subject.startswith(f"{node}.messaging.") for m in streams.messages(stream))
    other = streams.name()
    custom = f"{streams.prefix(other)}.x"  # several tokens
    _relay_all(store, make_relay(other, prefix=custom), name="custom")
    assert streams.info(other).config.subjects == [f"{custom}.>"]
    assert all(m.subject.startswith(f"{custom}.messaging.") for m in streams.messages(other))


def test_without_a_prefix_anywhere_the_stream_takes_the_default_one(
    private_server: Any, streams: Any
) -> None:
    # On a server of its own: on the shared one, a stream on "chanlog.>" would collide with
    # another run's, or with one a killed run left behind.
    streams.url = private_server.url
    streams.check_free(["chanlog.>"])
    store = _store(3)
    stream = streams.name()
    relay = NatsRelay(stream=stream, url=private_server.url, storage="memory")
    try:
        _relay_all(store, relay)
    finally:
        relay.close()
    assert streams.info(stream).config.subjects == ["chanlog.>"]
    subjects = [m.subject for m in streams.messages(stream)]
    assert subjects == [subject_of(record) for record in store.read_range(0, 3)]
    assert all(subject.startswith("chanlog.messaging.") for subject in subjects)


def test_a_subject_filtered_relay_publishes_only_its_records(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(40)
    stream = streams.name()
    # sample events belong to four objectives; keep one of them
    first = next(iter(store.read_range(0, 1)))
    entity = store.bus.subject_of(first).rsplit(".", 1)[1]
    # The consumer's patterns select in the store's subjects (prefix "chanlog"), whatever
    # prefix the relay publishes under.
    _relay_all(store, make_relay(stream), subjects=f"chanlog.messaging.message-sent.{entity}")
    offsets = [read_envelope(m.headers).offset for m in streams.messages(stream)]
    assert offsets == sorted(offsets)
    assert offsets == [
        r.offset for r in store.read_range(0, 40) if store.bus.subject_of(r).endswith(entity)
    ]


def test_a_foreign_message_at_the_streams_end_is_looked_past(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(20)
    stream = streams.name()
    _relay_all(store, make_relay(stream), name="first")
    answer = streams.publish(f"{streams.prefix(stream)}.other.thing._", b"not a record", {"X": "y"})
    assert answer["seq"] == 21
    relay = make_relay(stream)
    assert relay.position("next") == 20
    store.append_batch(sample_events(2, start=20))
    relay.bind(store, "next")
    for record in store.read_range(0, 22):
        relay(record)
    assert relay.settle(10)
    messages = streams.messages(stream)
    assert [m.seq for m in messages] == list(range(1, 24))
    assert [read_envelope(m.headers).offset for m in messages if "X" not in m.headers] == list(
        range(22)
    )


def test_a_forged_last_message_is_refused_at_bind(
    streams: Any, make_relay: Callable[..., NatsRelay]
) -> None:
    store = _store(20)
    stream = streams.name()
    _relay_all(store, make_relay(stream), name="first")
    # A real event's body, claiming an offset where this log has another record (or none).
    last = streams.messages(stream)[-1]
    forged = {k: v for k, v in last.headers.items() if not k.startswith("Nats-Expected")}
    forged["Nats-Msg-Id"] = forged["Nats-Msg-Id"].split(":")[0] + ":999"
    forged["Chanlog-Offset"] = "999"
    streams.publish(last.subject, last.data, forged)
    relay = make_relay(stream)
    assert relay.position("next") == 1000  # the body alone cannot tell
    with pytest.raises(IntegrityError, match=r"ends with offset 999 .*this log has no offset 999"):
        relay.bind(store, "next")


def test_without_bind_a_record_is_refused(make_relay: Callable[..., NatsRelay]) -> None:
    relay = make_relay("UNBOUND")
    with pytest.raises(Exception, match="bind"):
        relay(next(iter(_store(1).read_range(0, 1))))
    assert relay.settled() is None
    assert relay.settle(0.01)
    assert relay.stats()["published"] == 0
