"""Measure, in this fresh process, the memory held for N events (run as a subprocess by
:mod:`benchmarks.suite_memory`; prints the bytes held on stdout).

``python -m benchmarks.rss chanlog 10000`` or ``python -m benchmarks.rss eventsourcing 10000``.

The figure is the growth of the resident set from just before the first event is built to
just after the last one is stored (garbage collected): what the store keeps, its projections
included, not the events the caller built and dropped. Both sides first store a few events in
a throwaway store, so one-time lazy work is not counted.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import psutil  # type: ignore[import-untyped,unused-ignore]

__all__ = ["CHANNEL_SIZE", "held_bytes", "main"]

CHANNEL_SIZE = 1_000
"""Events per channel: N events are N / 1,000 channels of 1,000 events each."""


def _chanlog(events: int) -> Callable[[], object]:
    from benchmarks import workload
    from chanlog import EventStore

    # Warm up on a throwaway store first, so code loaded or generated lazily on the first
    # append (codecs, projection code) is not counted as memory held for the events.
    with EventStore() as warm:
        warm.append(workload.channel_created(workload.channel_id(1)))
        warm.append_batch(workload.channel_events(workload.channel_id(1), 1, 10))
    store = EventStore()

    def run() -> object:
        for number in range(events // CHANNEL_SIZE):
            cid = workload.channel_id(10**9 + number)
            store.append(workload.channel_created(cid))
            for index in range(1, CHANNEL_SIZE):
                store.append(workload.channel_event(cid, index))
        if len(store) != events:
            raise RuntimeError(f"store holds {len(store)} events, expected {events}")
        return store

    return run


def _eventsourcing(events: int) -> Callable[[], object]:
    from benchmarks import peer_eventsourcing, workload

    warm_app = peer_eventsourcing.make_app("popo")
    warm = peer_eventsourcing.new_channel(workload.channel_id(1))
    for index in range(1, 11):
        peer_eventsourcing.advance(warm, index)
        warm_app.save(warm)
    del warm, warm_app
    app = peer_eventsourcing.make_app("popo")

    def run() -> object:
        for number in range(events // CHANNEL_SIZE):
            channel = peer_eventsourcing.new_channel(workload.channel_id(10**9 + number))
            app.save(channel)
            for index in range(1, CHANNEL_SIZE):
                peer_eventsourcing.advance(channel, index)
                app.save(channel)
        return app

    return run


def held_bytes(contender: str, events: int) -> int:
    """Resident-set growth while ``contender`` stores ``events`` events."""
    prepare = {"chanlog": _chanlog, "eventsourcing": _eventsourcing}[contender]
    run = prepare(events)
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    kept = run()
    gc.collect()
    after = process.memory_info().rss
    del kept
    return int(after - before)


def main(argv: list[str]) -> int:
    """Entry point: ``CONTENDER EVENTS``."""
    if len(argv) != 2 or argv[0] not in {"chanlog", "eventsourcing"} or not argv[1].isdigit():
        print("usage: python -m benchmarks.rss {chanlog|eventsourcing} EVENTS", file=sys.stderr)
        return 2
    print(held_bytes(argv[0], int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
