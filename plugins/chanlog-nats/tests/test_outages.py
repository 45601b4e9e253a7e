"""The relay through NATS outages: the server restarted, the connection cut, the server
down when the relay starts. Each time nothing is lost, nothing is duplicated, and the
consumer's lag returns to 0 on its own (issue 16, "done when")."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chanlog_nats import NatsIngest, NatsRelay, read_envelope

from chanlog import EventStore
from chanlog.bus import ConsumerRunner
from chanlog.testing import sample_events

pytestmark = [pytest.mark.nats, pytest.mark.slow]

COUNT = 20_000
STREAM = "OUTAGES"


class Proxy:
    """A TCP relay between the client and the server whose connections can be cut."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(one: socket.socket, two: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(one, selectors.EVENT_READ, two)
        selector.register(two, selectors.EVENT_READ, one)
        try:
            while True:
                for key, _ in selector.select(1.0):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()

    def cut(self) -> None:
        """Close every connection in both directions, mid-stream."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


class RunningRelay:
    """A relay consumer of a memory store running on a thread."""

    def __init__(
        self, store: EventStore, url: str, lease_ttl: float = 15.0, **options: Any
    ) -> None:
        self.relay = NatsRelay(stream=STREAM, url=url, storage="file", window=64, **options)
        self.runner: ConsumerRunner = store.bus.consumer("relay", self.relay, lease_ttl=lease_ttl)
        self.store = store
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.runner.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def lag(self) -> int:
        return self.store.bus.consumers.info("relay").lag

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        if self.thread.is_alive():  # waiting for room in the window while NATS is away
            self.relay.interrupt()
            self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def store() -> EventStore:
    log = EventStore(projections=[])
    log.append_batch(sample_events(COUNT))
    return log


@pytest.fixture
def running() -> Iterator[list[RunningRelay]]:
    started: list[RunningRelay] = []
    yield started
    for relay in started:
        if relay.thread.is_alive():
            relay.close()


def _published(relay: RunningRelay) -> int:
    return int(relay.relay.stats()["published"])


def _check_stream(streams: Any, url: str) -> None:
    streams.url = url
    streams.names.append(STREAM)
    messages = streams.messages(STREAM, headers_only=True)
    offsets = [read_envelope(m.headers).offset for m in messages]
    assert len(offsets) == COUNT, f"{len(offsets)} messages, not {COUNT}"
    assert offsets == list(range(COUNT))


def test_a_server_restarted_mid_relay_loses_and_duplicates_nothing(
    private_server: Any,
    store: EventStore,
    running: list[RunningRelay],
    streams: Any,
    wait_until: Callable[..., None],
) -> None:
    relay = RunningRelay(store, private_server.url)
    running.append(relay)
    for round_number in range(2):
        wait_until(
            lambda n=round_number: _published(relay) > (n + 1) * 3000, 60, "records to go out"
        )
        private_server.stop()  # a clean restart: what it acknowledged is on disk
        time.sleep(1.0)  # down for a while: the lag grows, nothing is lost
        assert relay.lag() > 0
        private_server.start()
    wait_until(lambda: relay.lag() == 0, 120, "the relay's lag to return to 0")
    assert relay.relay.settle(10)
    assert relay.relay.stats()["reconciliations"] >= 3
    relay.close()
    _check_stream(streams, private_server.url)


def test_a_connection_cut_mid_relay_loses_and_duplicates_nothing(
    private_server: Any,
    store: EventStore,
    running: list[RunningRelay],
    streams: Any,
    wait_until: Callable[..., None],
) -> None:
    proxy = Proxy(private_server.port)
    try:
        relay = RunningRelay(store, f"nats://127.0.0.1:{proxy.port}")
        running.append(relay)
        for round_number in range(3):
            wait_until(
                lambda n=round_number: _published(relay) > (n + 1) * 2000, 60, "records to go out"
            )
            proxy.cut()
        wait_until(lambda: relay.lag() == 0, 120, "the relay's lag to return to 0")
        relay.close()
    finally:
        proxy.close()
    _check_stream(streams, private_server.url)


@pytest.mark.parametrize("outage", ["server down", "JetStream off"])
def test_a_relay_started_during_an_outage_waits_saying_why_then_catches_up(
    private_server: Any,
    store: EventStore,
    running: list[RunningRelay],
    streams: Any,
    wait_until: Callable[..., None],
    outage: str,
) -> None:
    private_server.stop()
    if outage == "JetStream off":
        private_server.start(jetstream=False)
    relay = RunningRelay(store, private_server.url, lease_ttl=1.5, connect_timeout=0.5)
    running.append(relay)
    wait_until(lambda: relay.runner.started, 30, "the runner to start")
    wait_until(lambda: relay.relay.failure() is not None, 30, "the relay to say why")
    assert relay.thread.is_alive()  # it waits, it does not die
    assert relay.lag() == COUNT
    assert relay.relay.failure() == relay.relay.stats()["last_error"]  # what chanlog run shows
    wait_until(  # what chanlog consumers shows, in any process (ADR 0048)
        lambda: store.bus.consumers.info("relay").state.last_error == relay.relay.failure(),
        30,
        "the consumer's last error to say why",
    )
    if outage == "JetStream off":
        assert "JetStream does not answer" in str(relay.relay.failure())
        private_server.stop()
    private_server.start()
    wait_until(lambda: relay.lag() == 0, 120, "the relay's lag to return to 0")
    wait_until(
        lambda: store.bus.consumers.info("relay").state.last_error is None,
        30,
        "the reason to be cleared once NATS is back",
    )
    relay.close()
    _check_stream(streams, private_server.url)


def test_a_relay_waiting_out_an_outage_stops_when_interrupted(
    private_server: Any, running: list[RunningRelay], wait_until: Callable[..., None]
) -> None:
    small = EventStore(projections=[])
    small.append_batch(sample_events(100))
    private_server.stop()
    relay = RunningRelay(small, private_server.url, connect_timeout=0.5)
    running.append(relay)
    wait_until(lambda: relay.relay.stats()["in_flight"] == 64, 30, "a full window")
    relay.stop.set()
    relay.thread.join(1.0)
    assert relay.thread.is_alive()  # the runner's thread waits for room in the window
    relay.relay.interrupt()
    # The runner stops; closing, it gives the window up to its lease period to settle.
    relay.thread.join(40)
    assert not relay.thread.is_alive()
    state = small.bus.consumers.state("relay")
    assert (state.position, state.parked) == (0, 0)  # nothing skipped, nothing parked


@pytest.mark.parametrize("kill", [False, True], ids=["restarted", "crashed"])
def test_a_server_restarted_mid_ingest_leaves_a_replica_with_the_nodes_head(
    private_server: Any,
    store: EventStore,
    running: list[RunningRelay],
    wait_until: Callable[..., None],
    kill: bool,
) -> None:
    """The ingest's side of an outage: the server stops (cleanly, or killed, so that
    acknowledgements it had not written are lost and messages come again) while a mirror
    ingests; it waits, then goes on, and ends with the node's head, nothing parked."""
    relay = RunningRelay(store, private_server.url)
    running.append(relay)
    wait_until(lambda: relay.lag() == 0, 120, "the stream to fill")
    relay.close()
    replica = EventStore(projections=[])
    ingest = NatsIngest(
        name="replica", stream=STREAM, durable="replica", url=private_server.url, batch=128
    )
    stop = threading.Event()
    thread = threading.Thread(target=ingest.run, args=(replica, stop), daemon=True)
    thread.start()
    try:
        for round_number in range(2):
            wait_until(
                lambda n=round_number: len(replica) > (n + 1) * 5000, 60, "records to come in"
            )
            private_server.stop(kill=kill)
            time.sleep(1.0)
            assert thread.is_alive()  # it waits, it does not die
            private_server.start()
        wait_until(lambda: len(replica) == COUNT, 120, "the replica to catch up")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert replica.backend.head() == store.backend.head()
    replica.verify()
    assert ingest.stats()["parked"] == 0
