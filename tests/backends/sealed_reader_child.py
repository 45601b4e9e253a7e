"""A reader of an sqlite log in a directory it may not write to (ADR 0039), for
``test_sqlite_sealed_directory.py``; the test runs it as another user, or with the directory
made read-only, so SQLite cannot create the log's ``-shm`` index.

Usage::

    python sealed_reader_child.py PATH

It opens a read-only store on PATH and answers one command a line on standard input:
``read`` prints, as JSON, the log's length, how many records ``verify`` checked and the
event ids; ``quit`` ends. A failure to open prints ``{"error": MESSAGE}``.
"""

from __future__ import annotations

import json
import sys

from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import StorageError
from chanlog.store import EventStore


def main(path: str) -> None:
    """Answer the commands on standard input until ``quit``."""
    try:
        store = EventStore(SqliteBackend(path, read_only=True), projections=[], read_only=True)
    except StorageError as error:
        print(json.dumps({"error": str(error)}), flush=True)
        return
    with store:
        for line in sys.stdin:
            if line.strip() == "quit":
                return
            answer = {
                "length": store.refresh(),
                "verified": store.verify(),
                "ids": [record.event_id for record in store.read_from(0)],
            }
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
