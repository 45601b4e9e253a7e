"""The SQL of one chanlog schema, composed once per backend (schema names are checked
identifiers, so they are spliced in safely)."""

from __future__ import annotations

from chanlog_postgres.schema import quoted

__all__ = ["RECORD_COLUMNS", "Statements"]

RECORD_COLUMNS = "position, event_id, event_type, streams, payload, chain_hash"
"""The ``events`` columns of a record, in :class:`~chanlog.records.StoredRecord` order."""


class Statements:
    """Every statement the backend runs on the log in ``schema``."""

    __slots__ = (
        "bump_version",
        "copy_events",
        "copy_streams",
        "delete_snapshots",
        "find",
        "find_many",
        "head",
        "insert_event",
        "insert_stream",
        "latest_snapshot",
        "lock_head",
        "notify",
        "read",
        "read_stream",
        "read_stream_payloads",
        "save_snapshot",
        "set_head",
        "snapshot_sizes",
        "stream_index",
        "stream_version",
        "stream_versions",
    )

    def __init__(self, schema: str) -> None:
        s = quoted(schema)
        self.head = f"SELECT length, chain_hash FROM {s}.head"
        self.lock_head = self.head + " FOR UPDATE"
        self.find = f"SELECT position FROM {s}.events WHERE event_id = %s"
        self.stream_version = f"SELECT version FROM {s}.stream_versions WHERE stream = %s"
        self.stream_versions = f"SELECT stream, version FROM {s}.stream_versions"
        self.insert_event = (
            f"INSERT INTO {s}.events ({RECORD_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
        )
        self.find_many = (
            f"SELECT event_id, position FROM {s}.events WHERE event_id = ANY(%s::bytea[])"
        )
        self.copy_events = f"COPY {s}.events ({RECORD_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        self.copy_streams = f"COPY {s}.streams (stream, position) FROM STDIN (FORMAT BINARY)"
        self.notify = "SELECT pg_notify(%s, %s)"
        self.insert_stream = f"INSERT INTO {s}.streams (stream, position) VALUES (%s, %s)"
        self.bump_version = (
            f"INSERT INTO {s}.stream_versions (stream, version) VALUES (%s, %s)"
            f" ON CONFLICT (stream) DO UPDATE SET version = {s}.stream_versions.version"
            " + EXCLUDED.version"
        )
        self.set_head = f"UPDATE {s}.head SET length = %s, chain_hash = %s"
        self.read = (
            f"SELECT {RECORD_COLUMNS} FROM {s}.events"
            " WHERE position >= %s AND position < %s ORDER BY position LIMIT %s"
        )
        join = (
            f" FROM {s}.streams AS t JOIN {s}.events AS e ON e.position = t.position"
            " WHERE t.stream = %s AND t.position >= %s AND t.position < %s"
            " ORDER BY t.position LIMIT %s"
        )
        self.read_stream = (
            "SELECT e.position, e.event_id, e.event_type, e.streams, e.payload, e.chain_hash" + join
        )
        self.read_stream_payloads = "SELECT e.position, e.event_type, e.payload" + join
        # COLLATE "C": byte order of UTF-8, which is code point order, as Python sorts str
        # (the database's default collation may sort by locale rules).
        self.stream_index = (
            f"SELECT stream, position FROM {s}.streams WHERE position < %s"
            ' ORDER BY position, stream COLLATE "C"'
        )
        self.save_snapshot = (
            f"INSERT INTO {s}.snapshots (position, versions, data, snapshot_hash)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (position) DO UPDATE SET"
            " versions = EXCLUDED.versions, data = EXCLUDED.data,"
            " snapshot_hash = EXCLUDED.snapshot_hash"
        )
        self.snapshot_sizes = (
            f"SELECT position, octet_length(data) FROM {s}.snapshots ORDER BY position"
        )
        self.delete_snapshots = f"DELETE FROM {s}.snapshots WHERE position = ANY(%s)"
        self.latest_snapshot = (
            f"SELECT position, versions, data, snapshot_hash FROM {s}.snapshots"
            " WHERE position <= %s ORDER BY position DESC LIMIT 1"
        )
