"""The remote end of the NATS end-to-end benchmark, in a process of its own:
``python -m benchmarks.nats_subscriber URL PREFIX COUNT``.

An empty memory store with the ``nats`` broker subscribes to the node's records, prints
``ready``, then, once COUNT records arrived, one line per record: its offset and the wall
clock (unix seconds) at which the subscriber's callback got it.
"""

from __future__ import annotations

import sys
import threading
import time

from chanlog import EventStore
from chanlog.records import RecordedEvent


def main(url: str, prefix: str, count: str) -> None:
    """Subscribe, collect ``count`` receive times, print them."""
    wanted = int(count)
    received: list[tuple[int, float]] = []
    done = threading.Event()

    def on_record(record: RecordedEvent) -> None:
        received.append((record.offset, time.time()))
        if len(received) >= wanted:
            done.set()

    with EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": url}
    ) as store:
        store.subscribe(on_record)
        print("ready", flush=True)
        done.wait(300)
    sys.stdout.write("".join(f"{offset} {at:.6f}\n" for offset, at in received))


if __name__ == "__main__":
    main(*sys.argv[1:4])
