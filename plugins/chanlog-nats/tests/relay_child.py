"""A relay in a process of its own, to be killed:
``python relay_child.py DB STREAM URL WINDOW``.

It opens the SQLite log ``DB`` and relays it to the JetStream stream ``STREAM`` until the
end of the log, printing ``streaming`` once it publishes and ``done`` once everything is
acknowledged. Where the SQLite backend keeps consumers it runs the consumer ``relay`` with
its runner (position committed after the PubAcks); otherwise it drives the relay itself
from the position the stream gives (the reconciliation alone).
"""

from __future__ import annotations

import sys

from chanlog_nats import NatsRelay

from chanlog import EventStore
from chanlog.backends.consumer_store import KeepsConsumers
from chanlog.backends.sqlite import SqliteBackend


def main(path: str, stream: str, url: str, window: str) -> None:
    store = EventStore(SqliteBackend(path), projections=[])
    relay = NatsRelay(stream=stream, url=url, storage="memory", window=int(window))
    if isinstance(store.backend, KeepsConsumers):
        # A short lease: the killed predecessor's lease must not hold this run up for long.
        runner = store.bus.consumer("relay", relay, commit_every=50, lease_ttl=1.0)
        with runner:
            print("streaming", flush=True)
            runner.drain()
            assert relay.settle(120)
            runner.flush()
    else:
        start = relay.position("relay") or 0
        relay.bind(store, "relay")
        print("streaming", flush=True)
        for record in store.read_range(start, len(store)):
            relay(record)
        assert relay.settle(120)
        relay.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
