"""A live subscriber in a process of its own: ``python broker_child.py URL PREFIX COUNT
[PATTERN]``.

It opens an empty memory store (no shared database: another machine, as far as it knows)
with the ``nats`` broker, subscribes (every record, or ``PATTERN``), prints ``ready``, then
one JSON line per record received (offset, event id, chain hash and the receive time, unix
seconds) until COUNT arrived.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from chanlog import EventStore
from chanlog.records import RecordedEvent


def main(url: str, prefix: str, count: str, pattern: str | None = None) -> None:
    wanted = int(count)
    done = threading.Event()
    received = 0

    def on_record(record: RecordedEvent) -> None:
        nonlocal received
        now = time.time()
        line = {"offset": record.offset, "id": record.event_id, "chain": record.chain_hash}
        sys.stdout.write(json.dumps({**line, "at": now}) + "\n")
        received += 1
        if received >= wanted:
            sys.stdout.flush()
            done.set()

    store = EventStore(
        projections=[], broker="nats", bus_prefix=prefix, broker_options={"url": url}
    )
    with store:
        store.subscribe(on_record, subjects=pattern)
        print("ready", flush=True)
        done.wait(120)


if __name__ == "__main__":
    main(*sys.argv[1:5])
