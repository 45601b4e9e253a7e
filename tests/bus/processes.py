"""Helpers of the bus tests that run real processes: the ``chanlog`` console script with a
configuration of durable consumers, the ``probe`` test plugin on its path, and readers of
what the consumers left behind (the probe's side file, the jsonl tap, the read model).

Used by ``tests/bus/test_processes_*.py`` (SQLite) and by the PostgreSQL plugin's
``test_bus_processes.py``: a backend is a ``[backend]`` table, so every test runs the same
way on either.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson

import chanlog
from chanlog.records import ConsumerState, StoredRecord

CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")
HERE = Path(__file__).resolve().parent

Backend = dict[str, Any]


# -- configuration ---------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    directory: Path, backend: Backend, consumers: Mapping[str, Mapping[str, object]]
) -> Path:
    """``directory/chanlog.toml`` with ``[backend]`` and one ``[consumers.NAME]`` each."""
    lines = ["[backend]", *(f"{k} = {_toml_value(v)}" for k, v in backend.items())]
    for name, table in consumers.items():
        lines += ["", f"[consumers.{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path = directory / "chanlog.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def plugin_site(directory: Path) -> Path:
    """A directory holding a distribution's metadata that names :mod:`probe_plugin` as a
    ``chanlog`` entry point: on ``PYTHONPATH`` (with this directory), the console script
    loads the ``probe`` handler like any installed plugin."""
    site = directory / "site"
    info = site / "chanlog_bus_probe-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chanlog-bus-probe\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[chanlog]\nprobe = probe_plugin\n")
    return site


def environment(site: Path | None = None) -> dict[str, str]:
    """The environment of a child: no CHANLOG_* variable of ours, the probe plugin's site."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(HERE)])
    return env


def cli(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``chanlog ARGS`` to completion."""
    assert CHANLOG is not None, "the chanlog console script is not installed"
    return subprocess.run(
        [CHANLOG, *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Worker:
    """A ``chanlog run`` process; its output goes to files (a pipe nobody reads would
    fill up and stall it)."""

    def __init__(self, cwd: Path, env: Mapping[str, str], *args: str, tag: str = "run") -> None:
        assert CHANLOG is not None, "the chanlog console script is not installed"
        self.out = cwd / f"{tag}-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [CHANLOG, "run", "--refresh", "0.2", *args],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def output(self) -> str:
        """What it printed so far (stdout, then stderr)."""
        return self.out.read_text() + self.err.read_text()

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM; return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Kill it if it still runs (cleanup)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextmanager
def workers() -> Iterator[list[Worker]]:
    """A list to put started workers in; whatever still runs at the end is killed."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str | Callable[[], str],
    pause: float = 0.05,
) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds
    (the message says ``what``, or what ``what()`` returns then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
        time.sleep(pause)


# -- the log and the consumers, from the test's own process ---------------------------------


def open_store(backend: Backend, **settings: Any) -> chanlog.EventStore:
    """A handle on the test's log (no projections: the test appends a known workload)."""
    return chanlog.open({"backend": dict(backend)}, projections=[], **settings)


def states(store: chanlog.EventStore) -> dict[str, ConsumerState]:
    """Every consumer's state, by name."""
    return {state.name: state for state in store.bus.consumers.states()}


def matching(store: chanlog.EventStore, pattern: str, end: int | None = None) -> list[int]:
    """The offsets of the records in ``[0, end)`` that ``pattern`` matches."""
    accepts = store.bus.subject_filter(pattern).accepts
    stop = len(store) if end is None else end
    return [
        stored.offset
        for stored in store.backend.read(0, stop)
        if accepts(stored.event_type, stored.streams)
    ]


def stored(store: chanlog.EventStore, end: int | None = None) -> list[StoredRecord]:
    """The stored records in ``[0, end)``."""
    return list(store.backend.read(0, len(store) if end is None else end))


# -- what the handlers left behind ----------------------------------------------------------


@attrs.frozen
class ProbeLine:
    """One line of the probe's side file."""

    kind: str
    offset: int
    pid: int
    time: float


def probe_lines(path: Path) -> list[ProbeLine]:
    """Every whole line of the probe's side file, in the order written."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        kind, offset, pid, moment = text.split()
        lines.append(ProbeLine(kind, int(offset), int(pid), float(moment)))
    return lines


def handled_by_pid(lines: Sequence[ProbeLine]) -> dict[int, list[int]]:
    """The offsets each process finished handling, in order."""
    runs: dict[int, list[int]] = collections.defaultdict(list)
    for line in lines:
        if line.kind == "E":
            runs[line.pid].append(line.offset)
    return dict(runs)


def tap_offsets(path: Path) -> list[int]:
    """The offsets of the jsonl tap's lines, in file order."""
    if not path.exists():
        return []
    return [orjson.loads(line)["offset"] for line in path.read_bytes().splitlines()]


@attrs.frozen
class ReadModel:
    """The channel read model's tables, read with a connection of the test's own."""

    tracked: int | None
    rows: dict[str, tuple[int, int]]  # channel id -> (offset of its latest update, updates)


def read_model(path: Path, consumer: str) -> ReadModel:
    """The read model's tracking offset for ``consumer`` and its rows."""
    if not path.exists():
        return ReadModel(None, {})
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with db:
            tracked = db.execute(
                "SELECT next_offset FROM tracking WHERE consumer = ?", (consumer,)
            ).fetchone()
            rows = db.execute("SELECT channel_id, offset, updates FROM channel_latest").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return ReadModel(None, {})
    finally:
        db.close()
    return ReadModel(
        None if tracked is None else tracked[0], {row[0]: (row[1], row[2]) for row in rows}
    )


def expected_read_model(
    store: chanlog.EventStore, end: int, start: int = 0
) -> dict[str, tuple[int, int]]:
    """What the read model must hold once the records in ``[start, end)`` are applied, each
    exactly once: per channel, the offset of its latest ``state-supported-updated`` and how
    many there were."""
    rows: dict[str, tuple[int, int]] = {}
    for record in store.backend.read(start, end):
        if record.event_type == "state-supported-updated":
            channel = record.streams[0].split(":", 1)[-1].lower()
            rows[channel] = (record.offset, rows.get(channel, (0, 0))[1] + 1)
    return rows
