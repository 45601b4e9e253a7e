"""cProfile the hot paths the targets depend on, for whoever optimizes them.

``python -m benchmarks.profiling`` writes ``benchmarks/results/profile-<path>.txt`` (top
entries by own time and by cumulative time) for:

- ``append``: in-memory append, one event per call, default projections, one subscriber;
- ``append-sqlite``: the same on the sqlite backend, ``durability="full"``;
- ``reconstruct``: cold reconstruction (no snapshot) of one entity of 1,000 events.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks import adapters, workload
from benchmarks.logs import TARGET, fill
from chanlog import EventStore
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend

__all__ = ["main", "profile"]

OUT = Path(__file__).resolve().parent / "results"
TOP = 30


def profile(work: Callable[[], object], title: str) -> str:
    """Run ``work`` under cProfile; the report as text."""
    profiler = cProfile.Profile()
    profiler.enable()
    work()
    profiler.disable()
    buffer = io.StringIO()
    buffer.write(f"# {title}\n\n## by own time (tottime)\n")
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(TOP)
    buffer.write("\n## by cumulative time\n")
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(TOP)
    return buffer.getvalue()


def _append(make_backend: Callable[[], Backend], events: int) -> Callable[[], object]:
    store = EventStore(make_backend())
    delivered = itertools.count()
    store.subscribe(lambda _record: next(delivered))
    cid = workload.channel_id(10**9)
    store.append(workload.channel_created(cid))

    def work() -> object:
        for index in range(1, events + 1):
            store.append(workload.channel_event(cid, index))
        store.close()
        return store

    return work


def _reconstruct(events: int, repeats: int) -> Callable[[], object]:
    store = adapters.open_store(MemoryBackend(), snapshots=False)
    fill(store, events, events)
    length = len(store)

    def work() -> object:
        for _ in range(repeats):
            adapters.reconstruct(store, TARGET, length, snapshots=False)
        return store

    return work


def main(argv: list[str]) -> int:
    """Profile the paths named in ``argv`` (default: all)."""
    names = argv or ["append", "append-sqlite", "reconstruct"]
    scratch = Path(tempfile.mkdtemp(prefix=".profile-", dir=OUT.parent))
    jobs: dict[str, tuple[str, Callable[[], Callable[[], object]]]] = {
        "append": (
            "in-memory append, 20,000 events one per call (projections + 1 subscriber)",
            lambda: _append(MemoryBackend, 20_000),
        ),
        "append-sqlite": (
            'sqlite append, durability "full", 1,000 events one per commit',
            lambda: _append(lambda: adapters.sqlite_backend(scratch / "p.db", "full"), 1_000),
        ),
        "reconstruct": (
            "cold reconstruct of one 1,000-event entity, 50 times",
            lambda: _reconstruct(1_000, 50),
        ),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            if name not in jobs:
                print(f"unknown path {name!r}; choose from {', '.join(jobs)}", file=sys.stderr)
                return 2
            title, prepare = jobs[name]
            try:
                report = profile(prepare(), title)
            except adapters.Unavailable as exc:
                print(f"{name}: skipped ({exc})")
                continue
            target = OUT / f"profile-{name}.txt"
            target.write_text(report)
            print(f"{name}: wrote {target}")
    finally:
        for path in scratch.iterdir():
            path.unlink()
        scratch.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
