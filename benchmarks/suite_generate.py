"""What ``chanlog generate --channels 1000 --turns 100`` leaves on disk with the default
configuration (issue 17, DESIGN section 9): the file, and the snapshots' share of it. The
command runs once per benchmark run (in a fresh process, as an operator would run it); both
rows read its result. And the size of a snapshot of a node whose channels are mostly idle,
incremental (ADR 0036) and whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache
from chanlog import EventStore
from chanlog.snapshots import EveryNEvents
from chanlog.workload import Workload

__all__ = ["cases"]


def _chanlog(*arguments: str, cwd: Path) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", "from chanlog.cli import main; main()", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"chanlog {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed.stdout


class _Generated:
    """The generated log's sizes, measured once."""

    def __init__(self, directory: Path, channels: int, turns: int) -> None:
        self.directory = directory
        self.channels = channels
        self.turns = turns
        self._sizes: tuple[float, float] | None = None

    def sizes(self) -> tuple[float, float]:
        """(file bytes, snapshot bytes) after ``init`` and ``generate``."""
        if self._sizes is None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            _chanlog("init", cwd=self.directory)
            _chanlog(
                "generate",
                "--channels",
                str(self.channels),
                "--turns",
                str(self.turns),
                cwd=self.directory,
            )
            report = json.loads(_chanlog("snapshots", "--json", cwd=self.directory))
            self._sizes = (float(report["file_bytes"]), float(report["total_bytes"]))
        return self._sizes

    def file(self) -> Callable[[], float]:
        return lambda: self.sizes()[0]

    def snapshots(self) -> Callable[[], float]:
        return lambda: self.sizes()[1]


def idle_node_snapshot(channels: int, busy: int, incremental: bool) -> Callable[[], float]:
    """A trial: a store of ``channels`` channels takes a snapshot, then ``busy`` new channels
    run their traffic and it takes another; the bytes of that second snapshot."""

    def trial() -> float:
        store = EventStore(
            snapshot_policy=EveryNEvents(n=10**9, incremental=incremental), checkpoint_every=0
        )
        store.append_batch(Workload(channels=channels, turns=1, seed=1).events())
        store.snapshot()
        store.append_batch(Workload(channels=busy, turns=4, seed=2).events())
        return float(len(store.snapshot().data))

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """The generated file and its snapshots; a snapshot of a mostly idle node."""
    del logs
    channels = config.size(1000, 50)
    turns = config.size(100, 20)
    generated = _Generated(config.path("generate"), channels, turns)
    what = f"chanlog generate --channels {channels} --turns {turns} (default config)"
    note = (
        "One run of `chanlog init` then `chanlog generate` in a fresh process, default "
        "configuration (sqlite, durability full, every-n-events n=1000 keep=2); file = the "
        "database and its WAL after the command; snapshots = `chanlog snapshots --json`."
    )
    idle, busy = config.size(1000, 100), config.size(20, 5)
    return [
        Case(
            "snapshots.idle-node",
            f"one snapshot of {idle:,} idle channels after {busy} busy ones ran",
            "memory",
            1,
            [
                Contender("chanlog", idle_node_snapshot(idle, busy, incremental=True)),
                Contender("whole snapshots", idle_node_snapshot(idle, busy, incremental=False)),
            ],
            config.reps(3),
            "The stored bytes of the second snapshot, incremental on the first (the default, "
            "ADR 0036) and with `incremental = false` (whole, compressed from 64 KB).",
        ),
        Case(
            "generate.file",
            f"file written by {what}",
            "memory",
            1,
            [Contender("chanlog", generated.file())],
            1,
            note,
        ),
        Case(
            "generate.snapshots",
            f"snapshots stored by {what}",
            "memory",
            1,
            [Contender("chanlog", generated.snapshots())],
            1,
            note,
        ),
    ]
