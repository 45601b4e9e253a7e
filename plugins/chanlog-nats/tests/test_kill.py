"""SIGKILLs of the relay while it streams a 50,000-event log: the stream ends with every
event exactly once, in offset order, and a replica ingested from it has the node's chain
head (issue 16, "done when"). Every process a test starts is stopped when it ends, also when it
fails."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from chanlog_nats import NatsIngest, NatsRelay, read_envelope

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.ingest import ingest_consumer_name
from chanlog.testing import sample_events

if TYPE_CHECKING:
    from conftest import Children, Streams

pytestmark = [pytest.mark.nats, pytest.mark.slow]

CHILD = Path(__file__).with_name("relay_child.py")
COUNT = 50_000
KILLS = 25


def _start(
    children: Children, database: Path, streams: Streams, stream: str, window: int
) -> subprocess.Popen[str]:
    prefix = streams.prefix(stream)
    return children.start(
        [sys.executable, str(CHILD), str(database), stream, streams.url, str(window), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _position(database: Path) -> int:
    """The relay consumer's committed position in the node's log (0: not created yet)."""
    backend = SqliteBackend(database, read_only=True)
    try:
        state = backend.consumer_state("relay")
        return 0 if state is None else state.position
    finally:
        backend.close()


def _wait_for(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line == word, f"the relay process said {line!r}, not {word!r}"


def _pause_before_kill(
    chooser: random.Random, published: int, streamed: float, kills_left: int
) -> float:
    """How long the next run streams before its kill: random, but paced by the relay's
    speed so far, so that the kills still to come land before the log is all out however
    fast this machine publishes."""
    pause = chooser.uniform(0.05, 0.3)
    if published and streamed:
        rate = published / streamed
        budget = (COUNT - published) / rate / (kills_left + 1)
        pause = min(pause, chooser.uniform(0.3, 0.9) * budget)
    return max(pause, 0.005)


def test_sigkills_of_the_relay_leave_every_event_once_in_order(
    tmp_path: Path,
    nats_url: str,
    streams: Any,
    children: Children,
    wait_until: Callable[..., None],
) -> None:
    database = tmp_path / "node.db"
    with EventStore(SqliteBackend(database, durability="normal"), projections=[]) as node:
        for start in range(0, COUNT, 10_000):
            node.append_batch(sample_events(10_000, start=start))
        node_head = node.backend.head()
    stream = streams.name()
    chooser = random.Random(16)
    kills = 0
    published_at_kill: list[int] = []
    published = 0
    streamed = 0.0  # seconds the relay ran before its kills, to pace the next ones
    while kills < KILLS:
        # A small window: publishing is slow enough for every kill to land mid-stream.
        process = _start(children, database, streams, stream, 16)
        _wait_for(process, "streaming")
        pause = _pause_before_kill(chooser, published, streamed, KILLS - kills)
        time.sleep(pause)
        if process.poll() is not None:
            break  # it finished before the kill: the log is all out
        process.kill()
        process.wait()
        kills += 1
        streamed += pause
        info = streams.info(stream)
        published = info.state.messages if info else 0
        published_at_kill.append(published)
        # The committed position never runs ahead of what the stream acknowledged.
        assert _position(database) <= published
    assert kills == KILLS, f"the relay finished after {kills} kills (kills must hit mid-stream)"
    assert published_at_kill[-1] < COUNT
    # A last, unkilled run finishes the job.
    process = _start(children, database, streams, stream, 256)
    _wait_for(process, "streaming")
    _wait_for(process, "done")
    assert process.wait(60) == 0
    info = streams.info(stream)
    assert (info.state.messages, info.state.last_seq) == (COUNT, COUNT)
    assert _position(database) == COUNT
    offsets = [read_envelope(m.headers).offset for m in streams.messages(stream, headers_only=True)]
    assert offsets == list(range(COUNT))
    # A replica ingested from the stream verifies with the node's chain head.
    replica = EventStore(
        SqliteBackend(tmp_path / "replica.db", durability="normal"), projections=[]
    )
    stop = threading.Event()
    ingest = NatsIngest(name="replica", stream=stream, durable="replica", url=nats_url, batch=512)
    thread = threading.Thread(target=ingest.run, args=(replica, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(replica) == COUNT, 180, "the replica to catch up")
    finally:
        stop.set()
        thread.join(30)
    assert replica.backend.head() == node_head
    replica.verify()
    assert ingest.stats()["parked"] == 0
    replica.close()


INGEST_COUNT = 40_000
INGEST_KILLS = 8


def _replica_length(database: Path) -> int:
    if not database.exists():
        return 0
    backend = SqliteBackend(database, read_only=True)
    try:
        return backend.head().length
    finally:
        backend.close()


def test_sigkills_of_the_ingest_leave_a_replica_with_the_nodes_head(
    tmp_path: Path,
    nats_url: str,
    streams: Any,
    children: Children,
    wait_until: Callable[..., None],
) -> None:
    """``chanlog ingest nats`` killed with SIGKILL mid-stream, again and again: after each
    kill the replica is a verified prefix of the node's log (nothing appended twice, nothing
    skipped); started again, it resumes at once (its dead predecessor's lease is taken
    over, ADR 0045) and ends with the node's chain head."""
    node = EventStore(projections=[])
    node.append_batch(sample_events(INGEST_COUNT))
    stream = streams.name()
    relay = NatsRelay(stream=stream, url=nats_url, storage="memory", prefix=streams.prefix(stream))
    with node.bus.consumer("relay", relay) as runner:
        runner.drain()
        assert relay.settle(60)
    workdir = tmp_path / "replica"
    workdir.mkdir()
    (workdir / "chanlog.toml").write_text(
        'projections = []\n[backend]\nname = "sqlite"\npath = "replica.db"\n'
        '[snapshots]\npolicy = "never"\n'
    )
    database = workdir / "replica.db"
    chooser = random.Random(17)
    arguments = ["ingest", "nats", "--stream", stream, "--durable", "replica", "--url", nats_url]
    arguments += ["--batch", "256"]
    kills = 0
    while kills < INGEST_KILLS:
        before = _replica_length(database)
        ingest = _chanlog(children, workdir, *arguments)
        wait_until(lambda b=before: _replica_length(database) > b, 60, "the ingest to append")
        time.sleep(chooser.uniform(0.0, 0.2))
        if ingest.poll() is not None or _replica_length(database) == INGEST_COUNT:
            break
        ingest.kill()
        assert ingest.wait(30) == -9
        kills += 1
        with EventStore(SqliteBackend(database), projections=[]) as replica:
            length = replica.verify()
            assert 0 < length < INGEST_COUNT
            (last,) = node.backend.read(length - 1, length)
            assert replica.backend.head().chain_hash == last.chain_hash  # the node's prefix
    assert kills == INGEST_KILLS, f"the ingest finished after {kills} kills"
    ingest = _chanlog(children, workdir, *arguments)
    wait_until(lambda: _replica_length(database) == INGEST_COUNT, 180, "the replica")
    ingest.send_signal(signal.SIGTERM)
    assert ingest.wait(60) == 0
    with EventStore(SqliteBackend(database), projections=[]) as replica:
        assert replica.verify() == INGEST_COUNT
        assert replica.backend.head() == node.backend.head()
        state = replica.bus.consumers.state(ingest_consumer_name("nats"))  # the source's name
        assert (state.position, state.parked) == (INGEST_COUNT, 0)


def _chanlog(children: Children, cwd: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """The console script, its output to files (a pipe nobody reads would stall it)."""
    chanlog = shutil.which("chanlog", path=os.path.dirname(sys.executable))
    assert chanlog is not None, "the chanlog console script is not installed"
    with (cwd / "out.txt").open("ab") as out:
        return children.start([chanlog, *arguments], cwd=cwd, stdout=out, stderr=out)
