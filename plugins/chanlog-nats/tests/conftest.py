"""Fixtures for the NATS tests: the server to use, unique streams deleted afterwards, a
private server to stop and restart, a synchronous view of a stream, and the processes a test
starts, stopped afterwards.

The tests read ``CHANLOG_TEST_NATS_URL`` (default ``nats://127.0.0.1:4222``, where these
machines run nats-server with JetStream). When it cannot be reached they are skipped, saying
so; with ``CHANLOG_REQUIRE_NATS=1`` (set by CI) they fail instead, so CI cannot pass by
skipping. Tests that stop or restart a server start their own (``nats-server -js`` on a free
port, in a temporary directory): the machine's shared server is never touched.

The shared server is shared with other runs (CI and developers on one machine, two runs at
once) and may keep streams a killed run left behind: the first fixture to reach it deletes
the test streams made over two hours before (:meth:`Streams.sweep`; no run of the suite
lasts that long), which would otherwise hold the server's memory for good. JetStream
refuses a stream whose subjects overlap another's, so every stream a test makes on it has
subjects of its own: ``<prefix>.>``, the prefix being the stream's unique name in lower
case (:meth:`Streams.prefix`), never the default ``chanlog``. The one test of the default
prefix runs on a private server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import nats
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

URL_VARIABLE = "CHANLOG_TEST_NATS_URL"
REQUIRE_VARIABLE = "CHANLOG_REQUIRE_NATS"
DEFAULT_URL = "nats://127.0.0.1:4222"
SERVER_BINARY = os.environ.get("CHANLOG_NATS_SERVER", "/usr/sbin/nats-server")
TEST_STREAM = re.compile(r"TEST_[0-9A-F]{12}")
"""The names :meth:`Streams.name` makes (and nothing else chanlog or a user would name)."""
ABANDONED_AFTER = datetime.timedelta(hours=2)

T = TypeVar("T")


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coroutine)


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The URL of the test server, checked to answer with JetStream; skips (or fails, in
    CI) otherwise."""
    url = os.environ.get(URL_VARIABLE, "").strip() or DEFAULT_URL

    async def probe() -> None:
        client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await client.jetstream().account_info()
        finally:
            await client.close()

    try:
        run(probe())
    except Exception as exc:
        _unavailable(f"NATS with JetStream at {url} ({URL_VARIABLE}) cannot be reached: {exc!r}")
    Streams(url).sweep(datetime.datetime.now(datetime.UTC) - ABANDONED_AFTER)
    return url


@attrs.frozen
class StoredMessage:
    """A message as a stream keeps it."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


def subjects_overlap(one: str, two: str) -> bool:
    """Whether some subject matches both patterns (``*``: one token, ``>``: the rest)."""
    left, right = one.split("."), two.split(".")
    for mine, theirs in zip(left, right, strict=False):
        if ">" in (mine, theirs):
            return True
        if mine != theirs and "*" not in (mine, theirs):
            return False
    return len(left) == len(right)


class Streams:
    """Makes unique stream names on one server, reads and edits streams, and deletes every
    stream it named when the test ends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names: list[str] = []

    def name(self) -> str:
        """A stream name no other test uses; no stream on the server captures its subjects
        (:meth:`prefix`) yet."""
        name = f"TEST_{uuid.uuid4().hex[:12].upper()}"
        self.check_free([f"{self.prefix(name)}.>"])
        self.names.append(name)
        return name

    @staticmethod
    def prefix(stream: str) -> str:
        """The subject prefix of the records a test puts in ``stream``: its unique name in
        lower case (a token of letters, digits and ``_``), so that no other test's stream,
        in this run or another, and no stream left behind by a killed run, captures them."""
        return stream.lower()

    def check_free(self, subjects: list[str]) -> None:
        """Fail, naming the stream and how to delete it, when a stream on the server already
        captures some of ``subjects``: the server would refuse the test's stream, and a
        relay would wait for ever for a stream it cannot create rather than fail."""

        async def work(js: Any) -> list[Any]:
            return list(await js.streams_info())

        for info in self.call(work):
            taken = [
                subject
                for subject in info.config.subjects or []
                if any(subjects_overlap(subject, wanted) for wanted in subjects)
            ]
            if taken:
                name = info.config.name
                pytest.fail(
                    f"the JetStream stream {name} on {self.url} captures {taken}, which "
                    f"overlaps the subjects {subjects} this test needs. Left behind by a "
                    f"killed run? Delete it if nothing uses it: nats --server {self.url} "
                    f"stream rm {name} -f (or, with nats-py: "
                    f"(await nats.connect({self.url!r})).jetstream().delete_stream({name!r}))",
                    pytrace=False,
                )

    def sweep(self, before: datetime.datetime) -> list[str]:
        """Delete the test streams (named as :meth:`name` names them) created before
        ``before``: what killed runs left behind. Return their names."""

        async def work(js: Any) -> list[str]:
            swept = [
                info.config.name
                for info in await js.streams_info()
                if TEST_STREAM.fullmatch(info.config.name or "")
                and info.created is not None
                and info.created < before
            ]
            for name in swept:
                with contextlib.suppress(NotFoundError):  # another run swept it first
                    await js.delete_stream(name)
            return swept

        return self.call(work)

    def call(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(js)`` with a fresh connection."""

        async def go() -> T:
            client = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)
            try:
                return await work(client.jetstream())
            finally:
                await client.close()

        return run(go())

    def info(self, name: str) -> Any:
        """The stream's info (``None``: no such stream)."""

        async def work(js: Any) -> Any:
            try:
                return await js.stream_info(name)
            except NotFoundError:
                return None

        return self.call(work)

    def add(self, name: str, subjects: list[str]) -> None:
        """Create a stream (after :meth:`check_free`, to fail saying why)."""
        self.check_free(subjects)

        async def work(js: Any) -> None:
            await js.add_stream(name=name, subjects=subjects, storage="memory")

        self.call(work)

    def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Any:
        """Publish one message to JetStream; return the server's answer."""

        async def work(js: Any) -> Any:
            message = await js._nc.request(subject, body, headers=headers, timeout=5)
            return orjson.loads(message.data)

        return self.call(work)

    def messages(self, name: str, *, headers_only: bool = False) -> list[StoredMessage]:
        """Every message of the stream, in order (through a throwaway pull consumer)."""

        async def work(js: Any) -> list[StoredMessage]:
            durable = f"read_{uuid.uuid4().hex[:8]}"
            await js.add_consumer(
                name,
                ConsumerConfig(
                    durable_name=durable,
                    ack_policy=AckPolicy.NONE,
                    headers_only=headers_only,
                    max_waiting=1,
                ),
            )
            subscription = await js.pull_subscribe_bind(durable, name)
            got: list[StoredMessage] = []
            try:
                while True:
                    try:
                        batch = await subscription.fetch(1000, timeout=1)
                    except (nats.errors.TimeoutError, TimeoutError):
                        break
                    got.extend(
                        StoredMessage(
                            m.metadata.sequence.stream, m.subject, dict(m.headers or {}), m.data
                        )
                        for m in batch
                    )
            finally:
                await js.delete_consumer(name, durable)
            return got

        return self.call(work)

    def delete_all(self) -> None:
        """Delete every stream this object named (those that exist)."""

        async def work(js: Any) -> None:
            for name in self.names:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)

        self.call(work)


@pytest.fixture
def streams(nats_url: str) -> Iterator[Streams]:
    """Stream names and tools on the test server; the streams are deleted afterwards."""
    tools = Streams(nats_url)
    yield tools
    tools.delete_all()


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PortTaken(RuntimeError):
    """A private server exited at start: another process holds its port."""


class PrivateServer:
    """A nats-server with JetStream of this test's own, on a free port, with its storage
    in a temporary directory, that the test may stop and start again.

    It has a unique server name, checked when it answers: between :func:`free_port` and the
    server's start, another run's server may take the port, and this test must not go on
    with (and stop, and restart) a server it does not own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.name = f"chanlog-test-{uuid.uuid4().hex[:12]}"
        self.process: subprocess.Popen[bytes] | None = None
        self.max_payload: int | None = None
        """The ``max_payload`` of the server the next :meth:`start` starts (``None``: the
        server's default, 1 MiB)."""

    @property
    def url(self) -> str:
        """The server's URL."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, jetstream: bool = True) -> None:
        """Start it (same port, same storage) and wait until it answers; without
        ``jetstream``, as a server that has JetStream off.

        Raises:
            PortTaken: it exited at start (another process holds the port).
        """
        assert self.process is None
        config: list[str] = []
        if self.max_payload is not None:  # a setting nats-server takes from a file only
            path = self.directory.with_name(f"{self.name}.conf")
            path.write_text(f"max_payload: {self.max_payload}\n")
            config = ["-c", str(path)]
        self.process = subprocess.Popen(
            [
                SERVER_BINARY,
                *config,
                *(["-js", "-sd", str(self.directory)] if jetstream else []),
                *("-p", str(self.port), "-a", "127.0.0.1", "-n", self.name),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise PortTaken(f"nats-server on port {self.port} exited at start ({code})")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RuntimeError(f"nats-server on port {self.port} did not start")

    def _answers(self) -> bool:
        """Whether this server (not another that holds the port) greets a client."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as connection:
                connection.settimeout(2)
                greeting = connection.makefile("rb").readline()
        except OSError:
            return False
        if not greeting.startswith(b"INFO "):
            return False
        return bool(orjson.loads(greeting[5:]).get("server_name") == self.name)

    def stop(self, *, kill: bool = False) -> None:
        """Stop it (SIGKILL with ``kill``, else SIGTERM) and wait until it is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        process.wait(20)


@pytest.fixture
def private_server(tmp_path: Path, nats_url: str) -> Iterator[PrivateServer]:
    """A started server of this test's own (needs the nats-server binary)."""
    del nats_url  # the shared server answering says NATS is meant to be tested here
    if shutil.which(SERVER_BINARY) is None:
        _unavailable(f"the nats-server binary ({SERVER_BINARY}) is not installed")
    server = PrivateServer(tmp_path / "jetstream")
    try:
        for attempt in range(3):
            try:
                server.start()
                break
            except PortTaken:
                if attempt == 2:
                    raise
                server.port = free_port()
        yield server
    finally:
        server.stop(kill=True)


def stop_process(process: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM (a worker's clean stop), SIGKILL if it is still there after ``grace``
    seconds, and wait until it is gone. Its pipes are read meanwhile (a child blocked
    writing to a full pipe would not get to its exit) and closed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


class Children:
    """Starts the processes of a test (``chanlog run``, ``chanlog ingest``, child
    scripts) and stops every one still running when the test ends, passed or failed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[Any]] = []

    def start(self, arguments: list[str], **options: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen(arguments, **options)``, remembered."""
        process = subprocess.Popen(arguments, **options)
        self.started.append(process)
        return process

    def stop_all(self, grace: float = 10) -> None:
        """:func:`stop_process` each of them."""
        for process in self.started:
            stop_process(process, grace)


@pytest.fixture
def children(streams: Streams) -> Iterator[Children]:
    """Processes stopped when the test ends. It asks for ``streams`` so that they stop
    before the test's streams are deleted: a relay still running could otherwise create
    one again, and a process left running would publish into a later test's."""
    del streams
    started = Children()
    yield started
    started.stop_all()


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool], float, str], None]:
    """``wait_until(check, timeout, what)``: poll ``check`` until it holds; fail naming
    ``what`` after ``timeout`` seconds (a bound, not a timing claim)."""
    return _wait_until
