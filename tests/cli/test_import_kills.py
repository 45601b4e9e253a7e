"""``chanlog import`` of an export killed at any point (SIGKILL, as an OOM kill would): the
log opens, verifies and holds a beginning of the export; running the import again finishes
the same copy an uninterrupted import makes, snapshots included (ADR 0032, ADR 0055)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import chanlog
from chanlog.backends.sqlite import SqliteBackend
from chanlog.copying import export_line
from chanlog.snapshots import EveryNEvents
from chanlog.workload import Workload

CHILD = Path(__file__).with_name("import_kill_child.py")
TESTS = Path(__file__).parents[1]


def incremental_export(path: Path) -> list[bytes]:
    """Export a log whose later snapshots are incremental (ADR 0036) to ``path``; return its
    lines."""
    with chanlog.EventStore(snapshot_policy=EveryNEvents(n=60, keep=0)) as source:
        source.append_batch(Workload(channels=12, turns=2, seed=21).events())
        for seed in range(4):
            for event in Workload(channels=1, turns=2, seed=40 + seed).events():
                source.append(event)
        lines = [orjson.dumps(export_line(record)) + b"\n" for record in source.read_from(0)]
    path.write_bytes(b"".join(lines))
    return lines


def configure(directory: Path, name: str) -> Path:
    """A configuration of an sqlite log that keeps 2 snapshots and their bases."""
    path = directory / f"{name}.toml"
    path.write_text(
        f'[backend]\nname = "sqlite"\npath = "{directory / name}.db"\n'
        '[snapshots]\npolicy = "every-n-events"\nn = 1000\nkeep = 2\n'
    )
    return path


def run(config: Path, export: Path, kill_at: int, trail: Path | None = None) -> int:
    """The import, killed at point ``kill_at`` (-1: not killed); its return code."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(TESTS), environment.get("PYTHONPATH", "")])
    arguments = [sys.executable, str(CHILD), str(config), str(export), str(kill_at)]
    done = subprocess.run(
        [*arguments, *([str(trail)] if trail else [])],
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, -9), done.stderr.decode()[-800:]
    return done.returncode


def snapshots_of(database: Path) -> list[tuple[int, bytes]]:
    """``(offset, hash)`` of the snapshots stored in ``database``."""
    backend = SqliteBackend(database, read_only=True)
    try:
        found = []
        for offset, _size in backend.snapshot_sizes():
            snapshot = backend.latest_snapshot(offset)
            assert snapshot is not None
            found.append((offset, snapshot.snapshot_hash))
        return found
    finally:
        backend.close()


def exported(config: Path) -> list[bytes]:
    with chanlog.open(config) as store:
        assert store.verify() == len(store)
        return [orjson.dumps(export_line(record)) + b"\n" for record in store.read_from(0)]


@pytest.mark.slow
def test_an_import_killed_at_any_point_is_resumed_into_the_same_copy(tmp_path: Path) -> None:
    """Every point that writes or deletes a snapshot, the point after it, and every 25th
    other point from a random start: about 40 kills, 2 s each."""
    export = tmp_path / "export.jsonl"
    lines = incremental_export(export)
    straight, trail = configure(tmp_path, "straight"), tmp_path / "trail"
    assert run(straight, export, -1, trail) == 0
    assert exported(straight) == lines
    expected = snapshots_of(tmp_path / "straight.db")
    assert len(expected) >= 2
    points = trail.read_text(encoding="utf-8").splitlines()
    snapshot_points = {n for n, what in enumerate(points, 1) if "INTO snapshots" in what}
    assert snapshot_points  # the import rebuilt snapshots
    deleting = {n for n, what in enumerate(points, 1) if "FROM snapshots" in what}
    chosen = snapshot_points | deleting | {n + 1 for n in snapshot_points | deleting}
    chosen |= set(range(1 + random.randrange(25), len(points) + 1, 25))
    failures = []
    for kill_at in sorted(chosen):
        config = configure(tmp_path, f"killed-{kill_at}")
        code = run(config, export, kill_at)
        held = exported(config)  # it opens for writing and verifies
        if held != lines[: len(held)]:
            failures.append(f"point {kill_at} ({points[kill_at - 1]}): not a beginning")
            continue
        assert run(config, export, -1) == 0
        if exported(config) != lines:
            failures.append(f"point {kill_at}: the resumed import is another log")
        elif snapshots_of(tmp_path / f"killed-{kill_at}.db") != expected:
            what = "killed" if code else "not killed"
            failures.append(f"point {kill_at} ({what}, {points[kill_at - 1]}): other snapshots")
        for leftover in tmp_path.glob(f"killed-{kill_at}.*"):
            leftover.unlink()
    assert not failures, "\n".join(failures)
