"""What keeps the NATS tests apart from each other, from another run on the same machine and
from what a killed run left behind (see ``conftest.py``): a private server never mistakes
another's for its own, and a test's processes are stopped however they take SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.nats


def test_a_private_server_does_not_take_another_on_its_port_for_itself(
    private_server: Any, tmp_path: Path
) -> None:
    other = type(private_server)(tmp_path / "other")
    other.port = private_server.port
    with pytest.raises(RuntimeError, match=f"on port {other.port} exited at start"):
        other.start()
    assert other.process is None
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
