"""The SQL the ``sqlite`` backend runs on a file of schema version 2 (ADR 0018), and the few
multi-statement operations built from it: looking up many event ids, counting a stream, and
entering whole blocks of positions in the ``streams`` index.

Statements are plain module constants so SQLite's statement cache (keyed by the text) keeps
them prepared, and callers look them up at call time (``sqlite_queries.NAME``).
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Sequence

from chanlog.backends.sqlite_rows import in_stream, more_streams

__all__ = [
    "CHAIN_AT",
    "COUNT_INDEXED",
    "DELETE_FROM",
    "DELETE_SNAPSHOT",
    "FIND_CHUNK",
    "FIND_IN",
    "FIND_ONE",
    "FIND_SIZES",
    "INSERT_EVENT",
    "LATEST_SNAPSHOT",
    "MAX_POSITION",
    "READ_INDEXED",
    "READ_INDEXED_PAYLOADS",
    "READ_RANGE",
    "READ_TAIL",
    "READ_TAIL_PAYLOADS",
    "SAVE_SNAPSHOT",
    "SELECT_LAST",
    "SNAPSHOT_SIZES",
    "STREAM_INDEX",
    "TAIL_STREAMS",
    "count_stream",
    "find_many",
    "index_blocks",
]

MAX_POSITION = 2**63 - 1
"""The greatest position SQLite can store (its integers are signed 64-bit)."""

FIND_CHUNK = 500
"""Event ids looked up per query by :func:`find_many`."""

SELECT_LAST = "SELECT position, chain_hash FROM events ORDER BY position DESC LIMIT 1"
"""The last record's position and chain hash: the rowid b-tree's last entry, O(log n)."""

_SELECT_RECORD = (
    "SELECT position, event_id, event_type, streams, payload, chain_hash, stream FROM events"
)
READ_RANGE = _SELECT_RECORD + " WHERE position >= ? AND position < ? ORDER BY position LIMIT ?"
"""Records in ``[start, end)``, at most a chunk of them."""

FIND_ONE = "SELECT position FROM events WHERE event_id = ?"
CHAIN_AT = "SELECT chain_hash FROM events WHERE position = ?"
DELETE_FROM = "DELETE FROM events WHERE position >= ?"
INSERT_EVENT = (
    "INSERT INTO events (position, event_id, event_type, streams, payload, chain_hash, stream)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# Entering a block of positions in the streams index: the first streams straight from the
# rows, in SQL; the rest (only events of several streams, and rows of schema version 1)
# through Python. OR IGNORE: rows of version 1 are in the index already.
_INDEX_FIRST_STREAMS = (
    "INSERT OR IGNORE INTO streams (stream, position) SELECT stream, position FROM events"
    " WHERE position >= ? AND position < ? AND stream IS NOT NULL"
)
_SELECT_MORE_STREAMS = (
    "SELECT position, stream, streams FROM events"
    " WHERE position >= ? AND position < ? AND streams != ''"
)
_INSERT_STREAM = "INSERT OR IGNORE INTO streams (stream, position) VALUES (?, ?)"

COUNT_INDEXED = "SELECT count(*) FROM streams WHERE stream = ? AND position < ?"
# Candidates in the unindexed tail: the stream is the first one, or may be among the rest.
_TAIL_CANDIDATES = " WHERE position >= ? AND position < ? AND (stream = ? OR streams != '')"
_SELECT_TAIL_STREAMS = "SELECT stream, streams FROM events" + _TAIL_CANDIDATES
READ_TAIL = _SELECT_RECORD + _TAIL_CANDIDATES + " ORDER BY position"
"""Candidate records of a stream in the unindexed tail (filter them with ``in_stream``)."""
READ_TAIL_PAYLOADS = (
    "SELECT position, event_type, payload, stream, streams FROM events"
    + _TAIL_CANDIDATES
    + " ORDER BY position"
)
READ_INDEXED = (
    "SELECT e.position, e.event_id, e.event_type, e.streams, e.payload, e.chain_hash, e.stream"
    " FROM streams AS s JOIN events AS e ON e.position = s.position"
    " WHERE s.stream = ? AND s.position >= ? AND s.position < ?"
    " ORDER BY s.position LIMIT ?"
)
READ_INDEXED_PAYLOADS = (
    "SELECT e.position, e.event_type, e.payload"
    " FROM streams AS s JOIN events AS e ON e.position = s.position"
    " WHERE s.stream = ? AND s.position >= ? AND s.position < ?"
    " ORDER BY s.position LIMIT ?"
)
# The index table's key is (stream, position): listing it by position sorts it once, in
# SQLite's temporary storage, which is what one pass of verify() can afford.
STREAM_INDEX = "SELECT stream, position FROM streams WHERE position < ? ORDER BY position, stream"
TAIL_STREAMS = (
    "SELECT position, stream, streams FROM events"
    " WHERE position >= ? AND position < ? ORDER BY position"
)

SAVE_SNAPSHOT = (
    "INSERT OR REPLACE INTO snapshots (position, versions, data, snapshot_hash) VALUES (?, ?, ?, ?)"
)
LATEST_SNAPSHOT = (
    "SELECT position, versions, data, snapshot_hash FROM snapshots"
    " WHERE position <= ? ORDER BY position DESC LIMIT 1"
)

SNAPSHOT_SIZES = "SELECT position, length(data) FROM snapshots ORDER BY position"
DELETE_SNAPSHOT = "DELETE FROM snapshots WHERE position = ?"

FIND_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, FIND_CHUNK)
"""The sizes :func:`find_many` pads a chunk of ids to, so a handful of texts cover all."""
FIND_IN = {
    size: "SELECT event_id, position FROM events WHERE event_id IN (" + ", ".join("?" * size) + ")"
    for size in FIND_SIZES
}


def find_many(connection: sqlite3.Connection, event_ids: Sequence[bytes]) -> dict[bytes, int]:
    """``{event id: offset}`` for those of ``event_ids`` in the log, through ``connection``.

    Each chunk is padded (by repeating an id, which changes nothing in ``IN``) to one of a
    few sizes, so a handful of statement texts cover every batch and SQLite's statement
    cache keeps them prepared.
    """
    found: dict[bytes, int] = {}
    for start in range(0, len(event_ids), FIND_CHUNK):
        chunk = list(event_ids[start : start + FIND_CHUNK])
        size = FIND_SIZES[bisect.bisect_left(FIND_SIZES, len(chunk))]
        chunk.extend([chunk[0]] * (size - len(chunk)))
        found.update(connection.execute(FIND_IN[size], chunk).fetchall())
    return found


def count_stream(connection: sqlite3.Connection, stream: str, length: int, block: int) -> int:
    """How many of the first ``length`` records belong to ``stream``: the index rows of the
    whole blocks, plus the matching rows of the tail after them."""
    indexed = length - length % block
    found = int(connection.execute(COUNT_INDEXED, (stream, indexed)).fetchone()[0])
    candidates = connection.execute(_SELECT_TAIL_STREAMS, (indexed, length, stream)).fetchall()
    return found + sum(1 for first, more in candidates if in_stream(stream, first, more))


def index_blocks(connection: sqlite3.Connection, start: int, stop: int) -> None:
    """Enter positions ``[start, stop)``, whole blocks, in the streams index."""
    connection.execute(_INDEX_FIRST_STREAMS, (start, stop))
    rows = connection.execute(_SELECT_MORE_STREAMS, (start, stop)).fetchall()
    if not rows:
        return
    more = [
        (stream, position)
        for position, first, streams in rows
        for stream in more_streams(position, streams)
        if stream != first
    ]
    connection.executemany(_INSERT_STREAM, more)
