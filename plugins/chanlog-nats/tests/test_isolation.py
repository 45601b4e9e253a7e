"""What keeps the NATS tests apart from each other, from another run on the same machine and
from what a killed run left behind (see ``conftest.py``): the check that a test's subjects
are free agrees with the server, a private server never mistakes another's for its own, and
a test's processes are stopped however they take SIGTERM."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import BadRequestError

pytestmark = pytest.mark.nats

HELD = (["a.>"], ["x.*.z"])
"""The subjects of the streams the server holds in the first test."""

PATTERNS = ("a", "a.b", "b.>", ">", "*", "*.c", "a.*.c", "x.a.>", "x.y", "x.y.z", "x.>", "*.*.z")


def _server_refuses(streams: Any, subject: str) -> bool:
    """Whether the server refuses a new stream on ``subject`` for overlapping another's."""

    async def work(js: Any) -> bool:
        name = f"PROBE_{uuid.uuid4().hex[:8].upper()}"
        try:
            await js.add_stream(name=name, subjects=[subject], storage="memory")
        except BadRequestError as exc:
            if "overlap" not in str(exc):
                raise
            return True
        await js.delete_stream(name)
        return False

    return bool(streams.call(work))


def test_the_check_that_subjects_are_free_agrees_with_the_server(
    private_server: Any, streams: Any
) -> None:
    streams.url = private_server.url
    held = []
    for subjects in HELD:
        held.append(streams.name())
        streams.add(held[-1], subjects)
    for pattern in PATTERNS:
        try:
            streams.check_free([pattern])
        except pytest.fail.Exception as failure:
            said = str(failure)
            assert _server_refuses(streams, pattern), f"{pattern}: the check said {said}"
            assert any(f"stream {name} on {private_server.url}" in said for name in held)
            assert "stream rm TEST_" in said
        else:
            assert not _server_refuses(streams, pattern), f"{pattern}: the check saw no overlap"


def test_streams_a_killed_run_left_behind_are_swept_and_nothing_else(
    private_server: Any, streams: Any
) -> None:
    streams.url = private_server.url
    test_stream = streams.name()
    streams.add(test_stream, [f"{streams.prefix(test_stream)}.>"])
    streams.add("NODE_EVENTS", ["node.>"])  # not a test's: kept however old
    streams.add("TEST_OF_A_USER", ["user.>"])  # not named as a test names its streams
    created = streams.info(test_stream).created

    assert streams.sweep(created) == []  # made at that moment: in use
    assert streams.sweep(created + datetime.timedelta(seconds=1)) == [test_stream]
    assert streams.info(test_stream) is None
    assert streams.info("NODE_EVENTS") is not None
    assert streams.info("TEST_OF_A_USER") is not None


def test_a_private_server_does_not_take_another_on_its_port_for_itself(
    private_server: Any, tmp_path: Path
) -> None:
    other = type(private_server)(tmp_path / "other")
    other.port = private_server.port
    try:
        with pytest.raises(RuntimeError, match=f"on port {other.port} exited at start"):
            other.start()
        assert other.process is None  # seen to exit
    finally:
        # Should the check fail, the second server is running (and may bind the port once
        # the first is stopped): it must not outlive the test.
        other.stop(kill=True)
    assert private_server.process.poll() is None  # the first one is left alone


SLEEPER = "import signal, time; {}; print('ready', flush=True); time.sleep(600)"


def test_the_processes_of_a_test_are_stopped_and_killed_if_they_ignore_sigterm(
    children: Any,
) -> None:
    stubborn = children.start(
        [sys.executable, "-c", SLEEPER.format("signal.signal(signal.SIGTERM, signal.SIG_IGN)")],
        stdout=subprocess.PIPE,
        text=True,
    )
    polite = children.start([sys.executable, "-c", SLEEPER.format("pass")], stdout=subprocess.PIPE)
    assert stubborn.stdout.readline() == "ready\n"
    assert polite.stdout.readline() == b"ready\n"
    began = time.monotonic()
    children.stop_all(grace=0.5)
    assert (polite.returncode, stubborn.returncode) == (-15, -9)
    assert time.monotonic() - began < 10
    assert stubborn.stdout.closed
