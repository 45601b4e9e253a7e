"""A lease whose holder's process is gone is taken over at once, not waited out (ADR 0045):
``chanlog run`` killed with SIGKILL and started again resumes without waiting for its own
dead lease to expire. Only a holder known to be gone: one of this boot and pid namespace
whose pid is free or a zombie."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.bus.lease import Lease, _pid_scope, holder_gone, new_holder
from chanlog.errors import LeaseHeld

LONG = 600.0  # seconds: a lease that no test waits out


def _holder(pid: int, scope: str | None = None) -> str:
    return f"{socket.gethostname()}:{pid}:0123abcd:{scope or _pid_scope()}"


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield child.pid
    child.kill()
    child.wait()


def test_only_a_holder_known_to_be_gone_is_gone(dead_pid: int, live_pid: int) -> None:
    assert _pid_scope() is not None  # Linux: the tests' machines have /proc
    assert new_holder().rsplit(":", 3)[3] == _pid_scope()
    assert holder_gone(_holder(dead_pid))
    assert not holder_gone(new_holder())  # this process
    assert not holder_gone(_holder(live_pid))
    assert not holder_gone(_holder(dead_pid, scope="0" * 12))  # another machine or namespace
    assert not holder_gone(f"{socket.gethostname()}:{dead_pid}:0123abcd")  # no scope
    assert not holder_gone(f"host:pid:0123abcd:{_pid_scope()}")
    assert not holder_gone("a holder of its own")


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        os.kill(child.pid, signal.SIGKILL)
        stat = Path(f"/proc/{child.pid}/stat")
        while " Z " not in stat.read_text(encoding="ascii"):
            os.sched_yield()
        assert holder_gone(_holder(child.pid))  # a zombie: its parent has not waited yet
    finally:
        child.wait()


def _held_by(holder: str) -> MemoryBackend:
    backend = MemoryBackend()
    backend.ensure_consumer("c", 0, [])
    backend.acquire_lease("c", holder, LONG)
    return backend


def test_the_lease_of_a_gone_holder_is_taken_at_once(
    dead_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    gone = _holder(dead_pid)
    backend = _held_by(gone)
    lease = Lease(backend, "c", "me", ttl=5)
    with caplog.at_level(logging.WARNING, logger="chanlog.bus"):
        state = lease.take(wait=False, stop=None)
    assert state is not None and state.lease_holder == "me"
    assert f"the process holding its lease ({gone}) no longer runs" in caplog.text


def test_the_lease_of_a_running_holder_is_waited_for(live_pid: int) -> None:
    backend = _held_by(_holder(live_pid))
    with pytest.raises(LeaseHeld):
        Lease(backend, "c", "me", ttl=5).take(wait=False, stop=None)


def test_a_backend_that_keeps_the_gone_holder_is_not_asked_forever(
    dead_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _held_by(_holder(dead_pid))
    released: list[str] = []
    monkeypatch.setattr(backend, "release_lease", lambda name, holder: released.append(holder))
    with pytest.raises(LeaseHeld):
        Lease(backend, "c", "me", ttl=5).take(wait=False, stop=None)
    assert released == [_holder(dead_pid)]


def test_reset_and_delete_take_a_gone_runners_lease_over(dead_pid: int, live_pid: int) -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        for name in ("gone", "running"):
            backend.ensure_consumer(name, 0, [])
        backend.acquire_lease("gone", _holder(dead_pid), LONG)
        backend.acquire_lease("running", _holder(live_pid), LONG)
        admin = store.bus.consumers
        assert not admin.info("gone").running  # what chanlog consumers shows
        assert admin.info("running").running
        assert admin.reset("gone", "earliest").lease_holder is None
        with pytest.raises(LeaseHeld):
            admin.reset("running", "earliest")
        backend.acquire_lease("gone", _holder(dead_pid), LONG)
        admin.delete("gone")
        with pytest.raises(LeaseHeld):
            admin.delete("running")
        assert [state.name for state in admin.states()] == ["running"]


_RUNNER = textwrap.dedent(
    """
    import sys, time
    import chanlog
    from chanlog.backends.sqlite import SqliteBackend
    with chanlog.EventStore(SqliteBackend(sys.argv[1]), projections=[]) as store:
        runner = store.bus.consumer("c", lambda record: None, lease_ttl=600)
        runner.start()
        print("holding", flush=True)
        time.sleep(600)
    """
)


def test_a_runner_started_again_after_a_kill_resumes_at_once(tmp_path: Path) -> None:
    """The worker's own process, killed with SIGKILL, held a lease of ten minutes: the
    runner started after it takes the lease over without waiting."""
    path = tmp_path / "log.db"
    SqliteBackend(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "holding\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        runner = store.bus.consumer("c", lambda record: None, lease_ttl=600)
        held = store.bus.consumers.state("c")
        assert held.lease_holder is not None and str(child.pid) in held.lease_holder
        assert runner.start(wait=False)  # would raise LeaseHeld for ten minutes
        assert store.bus.consumers.state("c").lease_holder == runner.holder
        runner.close()
