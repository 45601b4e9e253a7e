"""Memory held for 10k and 100k events, each measured in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache

__all__ = ["cases"]

ROOT = Path(__file__).resolve().parent.parent


def _held(contender: str, events: int) -> Callable[[], float]:
    def trial() -> float:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.rss", contender, str(events)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr.strip().splitlines()[-1:] or "rss failed")
        return float(completed.stdout.strip())

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """RSS growth for 10k and 100k events, chanlog against eventsourcing."""
    found = []
    for label, events in (("10k", 10_000), ("100k", 100_000)):
        events = config.size(events, events // 10)
        found.append(
            Case(
                f"memory.{label}",
                f"memory held for {events:,} events (RSS growth, fresh process)",
                "memory",
                1,
                [
                    Contender("chanlog", _held("chanlog", events)),
                    Contender("eventsourcing", _held("eventsourcing", events)),
                ],
                config.reps(3),
                "chanlog: memory store with default projections; eventsourcing: POPO "
                "application; channels of 1,000 events each. Resident-set growth from "
                "before the first event is built to after the last is stored and garbage "
                "is collected.",
            )
        )
    return found
