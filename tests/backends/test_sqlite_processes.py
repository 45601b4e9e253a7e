"""Several processes on one sqlite file, and processes killed while appending."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.store import EventStore
from chanlog.testing import sample_events

CHILD = Path(__file__).with_name("sqlite_child.py")
KILLS = 24


SMALL_RESERVE_STEPS = "8192,32768"
"""Reserve the log from 8 KiB on, 32 KiB at most at a time (ADR 0037): a reservation every
few commits, instead of a few per run."""


def _spawn(*arguments: str, reserve_steps: str | None = None) -> subprocess.Popen[str]:
    environment = dict(os.environ)
    if reserve_steps is not None:
        environment["CHANLOG_TEST_RESERVE_STEPS"] = reserve_steps
    return subprocess.Popen(
        [sys.executable, str(CHILD), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


@pytest.mark.parametrize("reserve_steps", [None, SMALL_RESERVE_STEPS])
def test_three_processes_append_to_one_file(tmp_path: Path, reserve_steps: str | None) -> None:
    """With small reserve steps, every process grows the shared log ahead of its own
    commits, under SQLite's writer lock, between the others' commits."""
    path = tmp_path / "shared.db"
    SqliteBackend(path).close()  # created once; the children open it
    count = 60
    children = {
        worker: _spawn("append", str(path), worker, str(count), reserve_steps=reserve_steps)
        for worker in "abc"
    }
    offsets: dict[str, list[int]] = {}
    for worker, child in children.items():
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        offsets[worker] = json.loads(stdout)
    every = sorted(offset for worker_offsets in offsets.values() for offset in worker_offsets)
    assert every == list(range(3 * count))
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == 3 * count
        for worker, worker_offsets in offsets.items():
            events = sample_events(count, salt=f"worker-{worker}:")
            stored = [store.get(event.event_id) for event in events]
            assert [record.offset for record in stored] == worker_offsets
            assert [record.event for record in stored] == events
            assert worker_offsets == sorted(worker_offsets)


def _round_lines(path: Path, round_number: int) -> list[str]:
    """The whole lines ``round_number``'s child recorded in ``path``, then the file ended
    with a line break: a kill can tear a child's last line (a write cut short by SIGKILL),
    which must not run into the next round's first one. A torn line is never whole, and a
    torn line of an earlier round is another round's."""
    text = path.read_text() if path.exists() else ""
    if text and not text.endswith("\n"):
        with path.open("a") as side:
            side.write("\n")
    complete = text[: text.rfind("\n") + 1]
    prefix = re.compile(rf"[IA] {round_number} \S")
    return [line for line in complete.splitlines() if prefix.match(line)]


def test_a_line_torn_by_a_kill_stays_out_of_every_round(tmp_path: Path) -> None:
    side = tmp_path / "acknowledged.log"
    side.write_text("A 0 0xaa 1\nA 0 0xbb 2\nA 0 0xc")  # the kill tore the last write
    assert _round_lines(side, 0) == ["A 0 0xaa 1", "A 0 0xbb 2"]
    with side.open("a") as appending:  # the next round's child
        appending.write("A 1 0xdd 3\n")
    assert _round_lines(side, 1) == ["A 1 0xdd 3"]
    assert _round_lines(side, 0) == ["A 0 0xaa 1", "A 0 0xbb 2", "A 0 0xc"]


@attrs.define
class _SideFile:
    """What a crash child recorded: acknowledged appends, and the one it had begun."""

    acknowledged: dict[str, int]
    in_flight: list[str]

    @classmethod
    def read(cls, path: Path, round_number: int) -> _SideFile:
        acknowledged: dict[str, int] = {}
        in_flight: list[str] = []
        for line in _round_lines(path, round_number):
            kind, _number, *values = line.split(" ")
            if kind == "I":
                in_flight = values
            else:
                offsets = [int(value) for value in values]
                acknowledged.update(zip(in_flight, offsets, strict=True))
                in_flight = []
        return cls(acknowledged, in_flight)


@pytest.mark.slow
@pytest.mark.parametrize(
    "reserve_steps", [None, SMALL_RESERVE_STEPS], ids=["default-reserve", "small-reserve-steps"]
)
def test_sigkill_while_appending_loses_no_acknowledged_event(
    tmp_path: Path, reserve_steps: str | None
) -> None:
    """With small reserve steps, kills land while the log is being grown with zeros, or
    with zeros past its last frames; every other round also deletes the shared-memory
    index, so SQLite rebuilds it by reading the log, zeros and all."""
    path = tmp_path / "crash.db"
    side_file = tmp_path / "acknowledged.log"
    chooser = random.Random(20261124)
    log: list[str] = []  # event ids of the log as verified after the previous kill
    acknowledged_total = 0
    reserved_tails = 0  # rounds whose kill left zeros past the log's frames
    for round_number in range(KILLS):
        child = _spawn(
            "crash", str(path), str(side_file), str(round_number), reserve_steps=reserve_steps
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == "ready\n", child.stderr.read() if child.stderr else ready
        time.sleep(chooser.uniform(0.0, 0.2))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        if child.stdout is not None:
            child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()

        recorded = _SideFile.read(side_file, round_number)
        wal = Path(f"{path}-wal").read_bytes()
        reserved_tails += len(wal) - len(wal.rstrip(b"\0")) > 4096
        if reserve_steps is not None and round_number % 2:
            Path(f"{path}-shm").unlink(missing_ok=True)
        with EventStore(SqliteBackend(path), projections=[]) as store:
            ids = [record.event_id for record in store.read_from(0)]
            assert store.verify() == len(ids)
        assert ids[: len(log)] == log, f"round {round_number}: earlier events changed"
        for event_id, offset in recorded.acknowledged.items():
            assert ids[offset] == event_id, f"round {round_number}: lost acknowledged {offset}"
        end_of_acknowledged = max(recorded.acknowledged.values(), default=len(log) - 1) + 1
        in_order = sorted(recorded.acknowledged, key=recorded.acknowledged.__getitem__)
        assert ids[len(log) : end_of_acknowledged] == in_order
        unacknowledged = ids[end_of_acknowledged:]
        # Nothing, or the whole batch that was in flight: never a part of it.
        assert unacknowledged in ([], recorded.in_flight), f"round {round_number}: torn batch"
        acknowledged_total += len(recorded.acknowledged)
        log = ids
    assert acknowledged_total > KILLS  # the kills did land in the middle of real work
    if reserve_steps is not None:
        # About half of the kills leave zeros past the last frame on a quiet machine; a
        # third under the whole suite's load. A few are enough to make the point.
        assert reserved_tails >= KILLS // 6, reserved_tails


GROUP_THREADS = 8
GROUP_KILLS = 12


@pytest.mark.slow
def test_sigkill_while_eight_threads_append_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Group commit (ADR 0029): every append a thread saw return is in the log, at the
    offset it was given, whatever group it was committed in."""
    path = tmp_path / "threads.db"
    side_file = tmp_path / "acknowledged.log"
    chooser = random.Random(20261205)
    acknowledged_total = 0
    previous: list[str] = []
    for round_number in range(GROUP_KILLS):
        child = _spawn("threads", str(path), str(side_file), str(round_number), str(GROUP_THREADS))
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == "ready\n", child.stderr.read() if child.stderr else ready
        time.sleep(chooser.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        acknowledged = {}
        for line in _round_lines(side_file, round_number):
            fields = line.split(" ")
            # Eight threads: a line torn by the kill may have another's written after it.
            if len(fields) == 4 and len(fields[2]) == 66 and fields[3].isdigit():
                acknowledged[fields[2]] = int(fields[3])
        with EventStore(SqliteBackend(path), projections=[]) as store:
            ids = [record.event_id for record in store.read_from(0)]
            assert store.verify() == len(ids)
        assert ids[: len(previous)] == previous, f"round {round_number}: earlier events changed"
        for event_id, offset in acknowledged.items():
            assert offset < len(ids) and ids[offset] == event_id, (
                f"round {round_number}: lost acknowledged {event_id} at {offset}"
            )
        assert len(set(ids)) == len(ids)
        acknowledged_total += len(acknowledged)
        previous = ids
    assert acknowledged_total > GROUP_KILLS * GROUP_THREADS  # the kills landed in real work
