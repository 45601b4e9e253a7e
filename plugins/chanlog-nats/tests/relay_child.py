"""A relay in a process of its own, to be killed:
``python relay_child.py DB STREAM URL WINDOW PREFIX``.

It opens the SQLite log ``DB`` and runs the durable consumer ``relay`` (handler
``nats-relay``, stream ``STREAM`` on subjects ``PREFIX.>``, ``WINDOW`` publishes in flight)
up to the end of the log,
printing ``streaming`` once its runner holds the lease and ``done`` once everything is
acknowledged and the position committed.
"""

from __future__ import annotations

import sys

from chanlog_nats import NatsRelay

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend


def main(path: str, stream: str, url: str, window: str, prefix: str) -> None:
    store = EventStore(SqliteBackend(path, durability="normal"), projections=[])
    relay = NatsRelay(stream=stream, url=url, storage="memory", window=int(window), prefix=prefix)
    # A short lease: the killed predecessor's lease must not hold this run up for long.
    runner = store.bus.consumer("relay", relay, commit_every=50, lease_ttl=0.5)
    with runner:
        print("streaming", flush=True)
        runner.drain()
        assert relay.settle(120)
        runner.flush()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
