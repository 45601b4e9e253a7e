"""A node killed at every point of its life opens again, whole: no healthy log refused.

``crash_points_child.py`` lives a node's life (creation, single, batched and grouped
appends, snapshots taken and pruned, a consumer's commits, the close, a reopen) and kills
itself at one chosen point: before one SQL statement, or before one call that changes files.
Random kills land where the time goes (the fsyncs); these land, one each, on every step in
between: the window between two statements, between two transactions of one operation,
between a temporary file and its rename, between a commit and the head witness. After each
kill the log must open for writing, verify, hold every acknowledged append and nothing of a
half batch, fold to the state a replay gives, and take the node's whole life again.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chanlog
from backends.crash_points_child import DROP_REASON, config, drop_for
from chanlog.backends.memory import MemoryBackend
from chanlog.events import ChannelCreated, MessageDropped

CHILD = Path(__file__).with_name("crash_points_child.py")
STRIDE_VARIABLE = "CHANLOG_CRASH_POINTS_STRIDE"


def stride(default: int) -> int:
    """Kill at every STRIDE-th point (``CHANLOG_CRASH_POINTS_STRIDE``; 1: at every one)."""
    return int(os.environ.get(STRIDE_VARIABLE, str(default)))


def live(backend: dict[str, Any], side: Path, kill_at: int) -> subprocess.CompletedProcess[str]:
    """The node's life on ``backend``, killed at point ``kill_at`` (-1: not killed)."""
    return subprocess.run(
        [sys.executable, str(CHILD), json.dumps(backend), str(side), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _appends(side: Path) -> tuple[list[list[str]], list[list[str]]]:
    """The acknowledged appends, and those asked and never acknowledged (at most one per
    thread of the life), from the side file."""
    asked: list[list[str]] = []
    acknowledged: list[list[str]] = []
    if side.exists():
        for line in side.read_text(encoding="ascii").splitlines():
            kind, *ids = line.split(" ")
            (asked if kind == "I" else acknowledged).append(ids)
    for ids in acknowledged:
        asked.remove(ids)
    return acknowledged, asked


def _reconstructed(store: chanlog.EventStore, channel: str, at: int) -> Any:
    try:
        return store.reconstruct("channel", channel, at)
    except chanlog.NotFound:
        return None


def check(backend: dict[str, Any], side: Path, chooser: random.Random) -> list[str]:
    """What is wrong with the log a kill left (nothing: an empty list)."""
    acknowledged, unacknowledged = _appends(side)
    problems: list[str] = []
    with chanlog.open(config(backend)) as store:
        if store.verify() != len(store):
            problems.append("verify disagrees with the length")
        records = list(store)
        log = {record.event_id for record in records}
        for ids in acknowledged:
            if not log.issuperset(ids):
                problems.append(f"lost an acknowledged append: {ids}")
        for ids in unacknowledged:
            if log.intersection(ids) not in (set(), set(ids)):
                problems.append(f"half of an append: {ids}")
        with chanlog.EventStore(MemoryBackend()) as replay:
            replay.append_batch([record.event for record in records])
            channels = sorted(
                {r.event.channel_id for r in records if isinstance(r.event, ChannelCreated)}
            )
            for channel in channels:
                if store.state("channel", channel) != replay.state("channel", channel):
                    problems.append(f"channel {channel}: state differs from a replay")
                at = chooser.randrange(len(records) + 1)
                if _reconstructed(store, channel, at) != _reconstructed(replay, channel, at):
                    problems.append(f"channel {channel} at {at}: reconstructed differs")
        for consumer in store.bus.consumers.states():
            if consumer.position > len(store):
                problems.append(f"consumer {consumer.name} past the log's end")
        problems += _dropped_once(store, records)
    return problems


def _dropped_once(store: chanlog.EventStore, records: list[chanlog.RecordedEvent]) -> list[str]:
    """The ``dropper`` consumer's appends are committed with its position: exactly one drop
    for every record it passed that asks for one, none for a record it has not passed."""
    state = next((s for s in store.bus.consumers.states() if s.name == "dropper"), None)
    passed = 0 if state is None else state.position
    wanted = {drop.message_id for r in records[:passed] for drop in drop_for(r)}
    dropped = [  # the workload drops messages of its own, for other reasons
        r.event.message_id
        for r in records
        if isinstance(r.event, MessageDropped) and r.event.reason == DROP_REASON
    ]
    problems = []
    if len(dropped) != len(set(dropped)):
        problems.append("a record was handled twice: two drops of one message")
    if set(dropped) != wanted:
        differ = sorted(set(dropped) ^ wanted, key=str)  # key: a drop may name no message
        problems.append(f"drops {differ[:3]}... do not match the position")
    return problems


def kill_at_every_point(fresh: Callable[[str], dict[str, Any]], workdir: Path, every: int) -> int:
    """Kill the life at every ``every``-th point (from a random start), each on a fresh log
    (``fresh(name)`` makes its backend table), check what each kill left, live the life
    again on it and check again. Return how many points were tried; fail naming each point
    whose log was wrong."""
    dry = live(fresh("dry"), workdir / "dry.side", -1)
    assert dry.returncode == 0, dry.stderr
    points = int(dry.stdout)
    assert points > 2000, points  # the life reached every part
    chooser = random.Random()
    failures: list[str] = []
    tried = range(1 + chooser.randrange(every), points + 1, every)
    for kill_at in tried:
        backend, side = fresh(str(kill_at)), workdir / f"{kill_at}.side"
        killed = live(backend, side, kill_at)
        where = killed.stderr.strip().splitlines()[-1][:200] if killed.stderr else "?"
        if killed.returncode not in (-9, 0):
            failures.append(f"{where}: the life failed: {killed.stderr[-800:]}")
            continue
        try:
            problems = check(backend, side, chooser)
            again = live(backend, side, -1)
            if again.returncode != 0:
                problems.append(f"the life again failed: {again.stderr[-800:]}")
            elif not problems:
                problems = check(backend, side, chooser)
        except chanlog.ChanlogError as error:
            problems = [f"refused: {type(error).__name__}: {error}"]
        failures += [f"{where}: {problem}" for problem in problems]
        for leftover in workdir.glob(f"{kill_at}.*"):
            leftover.unlink()
    assert not failures, "\n".join(failures[:20])
    return len(tried)
