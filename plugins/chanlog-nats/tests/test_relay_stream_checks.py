"""The relay goes on from its stream's end only when that end continues what the log
relayed (ADR 0049): a log that lost records and grew past the relay's position, a stream
deleted under a running relay, a server that kept the stream in memory and
restarted. Each is refused loudly, through the runner as ``chanlog run`` drives it, and
the remedy the error names works."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chanlog_nats import NatsRelay, read_envelope

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus import ConsumerRunner
from chanlog.errors import IntegrityError
from chanlog.testing import sample_events

pytestmark = pytest.mark.nats

NAME = "to-nats"


def _offsets(streams: Any, stream: str) -> list[int]:
    return [read_envelope(m.headers).offset for m in streams.messages(stream, headers_only=True)]


def _delete(streams: Any, stream: str) -> None:
    async def work(js: Any) -> None:
        await js.delete_stream(stream)

    streams.call(work)


def _relay(streams: Any, stream: str, **options: Any) -> NatsRelay:
    """A relay to ``stream`` on the streams' server, on the stream's own subjects."""
    prefix = streams.prefix(stream)
    return NatsRelay(stream=stream, url=streams.url, storage="memory", prefix=prefix, **options)


def _relay_all(store: EventStore, relay: NatsRelay) -> None:
    """What one run of ``chanlog run`` does with a log it catches up with."""
    with store.bus.consumer(NAME, relay) as runner:
        runner.drain()
        assert relay.settle(30)
        runner.flush()


class Running:
    """A relay consumer run on a thread, as ``chanlog run`` runs it."""

    def __init__(self, store: EventStore, relay: NatsRelay) -> None:
        self.relay = relay
        self.runner: ConsumerRunner = store.bus.consumer(NAME, relay, lease_ttl=1.5)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.runner.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.relay.interrupt()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def running(streams: Any) -> Iterator[list[Running]]:
    """Relays on threads, stopped before the streams are deleted (a relay that has
    relayed nothing yet would create its stream again)."""
    del streams
    started: list[Running] = []
    yield started
    for run in started:
        if run.thread.is_alive():
            run.close()


class Lines(logging.Handler):
    """Counts what the relay logs at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@pytest.fixture
def relay_lines() -> Iterator[Lines]:
    lines = Lines()
    logger = logging.getLogger("chanlog.nats")
    logger.addHandler(lines)
    yield lines
    logger.removeHandler(lines)


def _restore(path: Path, backup: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, path)


def test_a_relay_started_by_a_runner_refuses_a_log_that_lost_records_and_grew_past_it(
    tmp_path: Path, streams: Any
) -> None:
    log, backup = tmp_path / "log.sqlite", tmp_path / "backup.sqlite"
    stream = streams.name()
    with EventStore(SqliteBackend(log), projections=[]) as store:
        store.append_batch(sample_events(20))
        _relay_all(store, _relay(streams, stream))
    with sqlite3.connect(log) as source, sqlite3.connect(backup) as copy:
        source.backup(copy)  # the log of 20 records, relayed up to 20
    with EventStore(SqliteBackend(log), projections=[]) as store:
        store.append_batch(sample_events(10, start=20))
        _relay_all(store, _relay(streams, stream))
    assert _offsets(streams, stream) == list(range(30))
    _restore(log, backup)
    with EventStore(SqliteBackend(log), projections=[]) as store:
        # Others take the lost offsets 20..29, and the log grows past the stream's end.
        store.append_batch(sample_events(20, start=20, salt="other"))
        relay = _relay(streams, stream)
        runner = store.bus.consumer(NAME, relay)
        try:
            with pytest.raises(
                IntegrityError, match=r"ends with offset 29 .*not this log's record"
            ) as error:
                runner.start()
        finally:
            runner.close()
        assert error.value.offset == 29
        assert f"chanlog consumers reset {NAME} --to earliest" in str(error.value)
        assert store.bus.consumers.state(NAME).position == 20  # not moved past 20..39
        assert _offsets(streams, stream) == list(range(30))  # nothing published after 29

        # The remedy the error names: a fresh stream, the log republished from offset 0.
        _delete(streams, stream)
        store.bus.consumers.reset(NAME, "earliest")
        _relay_all(store, _relay(streams, stream))
        messages = streams.messages(stream, headers_only=True)
        ids = [read_envelope(m.headers).event_id for m in messages]
        assert ids == [record.event_id for record in store.read_range(0, 40)]


def _says_the_stream_is_gone(
    store: EventStore, run: Running, stream: str, wait_until: Callable[..., None]
) -> None:
    """The running relay says why it waits, in its process and in the consumer's row."""
    wait_until(lambda: "is gone" in str(run.relay.failure()), 30, "the relay to say why")
    failure = str(run.relay.failure())
    assert f"stream {stream} is gone" in failure
    assert "stored offsets up to 9" in failure
    assert f"chanlog consumers reset {NAME} --to earliest" in failure
    wait_until(
        lambda: store.bus.consumers.info(NAME).state.last_error == failure,
        30,
        "the consumer's last error to say why",
    )


def _backs_off(run: Running, lines: Lines) -> None:
    """No hot loop: a few reconciliations a second at most, and the reason said once."""
    before, logged = run.relay.stats()["reconciliations"], lines.count
    time.sleep(2.0)
    assert run.relay.stats()["reconciliations"] - before <= 5
    assert lines.count == logged


def test_a_stream_deleted_under_a_running_relay_is_a_failure_it_backs_off_on_not_a_new_stream(
    streams: Any,
    running: list[Running],
    relay_lines: Lines,
    wait_until: Callable[..., None],
) -> None:
    store = EventStore(projections=[])
    store.append_batch(sample_events(10))
    stream = streams.name()
    run = Running(store, _relay(streams, stream))
    running.append(run)
    wait_until(lambda: store.bus.consumers.info(NAME).lag == 0, 30, "the records to go out")
    _delete(streams, stream)
    store.append_batch(sample_events(5, start=10))
    _says_the_stream_is_gone(store, run, stream, wait_until)
    _backs_off(run, relay_lines)
    assert streams.info(stream) is None  # not made again mid-log
    assert store.bus.consumers.info(NAME).lag == 5
    run.close()

    # chanlog run started again: refused at start, not a stream begun at offset 10.
    relay = _relay(streams, stream)
    runner = store.bus.consumer(NAME, relay)
    try:
        with pytest.raises(IntegrityError, match=rf"stream {stream} is gone.*its position is 10"):
            runner.start()
    finally:
        runner.close()
    assert streams.info(stream) is None

    store.bus.consumers.reset(NAME, "earliest")
    _relay_all(store, _relay(streams, stream))
    assert _offsets(streams, stream) == list(range(15))


def test_a_memory_stream_lost_with_its_server_is_refused_not_begun_again_mid_log(
    private_server: Any,
    streams: Any,
    running: list[Running],
    relay_lines: Lines,
    wait_until: Callable[..., None],
) -> None:
    streams.url = private_server.url
    store = EventStore(projections=[])
    store.append_batch(sample_events(10))
    stream = streams.name()
    run = Running(
        store,
        _relay(streams, stream, connect_timeout=0.5),
    )
    running.append(run)
    wait_until(lambda: store.bus.consumers.info(NAME).lag == 0, 30, "the records to go out")
    private_server.stop()
    private_server.start()  # the stream was in memory: it is gone
    store.append_batch(sample_events(5, start=10))
    _says_the_stream_is_gone(store, run, stream, wait_until)
    _backs_off(run, relay_lines)
    assert streams.info(stream) is None


def test_a_consumer_that_starts_at_latest_begins_its_stream_there(streams: Any) -> None:
    store = EventStore(projections=[])
    store.append_batch(sample_events(10))
    stream = streams.name()
    relay = _relay(streams, stream)
    with store.bus.consumer(NAME, relay, start="latest") as runner:
        store.append_batch(sample_events(3, start=10))
        runner.drain()
        assert relay.settle(30)
        runner.flush()
    assert _offsets(streams, stream) == [10, 11, 12]
    # Started again, it goes on: the stream holds what the consumer relayed.
    store.append_batch(sample_events(2, start=13))
    _relay_all(store, _relay(streams, stream))
    assert _offsets(streams, stream) == [10, 11, 12, 13, 14]


def test_a_stream_that_lost_its_last_messages_is_refused_and_the_reset_it_names_works(
    streams: Any,
) -> None:
    store = EventStore(projections=[])
    store.append_batch(sample_events(20))
    stream = streams.name()
    _relay_all(store, _relay(streams, stream))
    assert store.bus.consumers.state(NAME).position == 20

    # What a server that lost its last writes holds: the stream as it was at offset 14 (made
    # again from a copy of the log's first 15 records, so that the server does not remember
    # the lost messages' ids either).
    _delete(streams, stream)
    copy = EventStore(projections=[])
    copy.append_batch(sample_events(15))
    _relay_all(copy, _relay(streams, stream))
    assert _offsets(streams, stream) == list(range(15))
    store.append_batch(sample_events(5, start=20))
    runner = store.bus.consumer(NAME, _relay(streams, stream))
    try:
        with pytest.raises(
            IntegrityError, match=r"ends with offset 14, .*position \(20\)"
        ) as error:
            runner.start()
    finally:
        runner.close()
    assert f"chanlog consumers reset {NAME} --to 15" in str(error.value)
    assert store.bus.consumers.state(NAME).position == 20
    assert _offsets(streams, stream) == list(range(15))  # nothing published past the gap

    store.bus.consumers.reset(NAME, 15)  # the remedy the error names
    _relay_all(store, _relay(streams, stream))
    assert _offsets(streams, stream) == list(range(25))
