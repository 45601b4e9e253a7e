"""The in-memory backend: the default of ``EventStore()``. Nothing touches the disk."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from chanlog.errors import ConfigError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = ["MemoryBackend"]


class _MemoryTransaction:
    """The writer lock and the staged records of one write; a context manager."""

    __slots__ = ("_backend", "_pending", "head")

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._pending: list[StoredRecord] = []

    def __enter__(self) -> _MemoryTransaction:
        self._backend._lock.acquire()
        self.head = self._backend.head()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        backend = self._backend
        try:
            if exc_type is None and self._pending:
                self._commit()
                if backend._waiters:
                    backend._grew.notify_all()
        finally:
            backend._lock.release()

    def find(self, event_id: bytes) -> int | None:
        return self._backend._by_id.get(event_id)

    def stream_version(self, stream: str) -> int:
        offsets = self._backend._streams.get(stream)
        return 0 if offsets is None else len(offsets)

    def append(self, records: Sequence[StoredRecord]) -> None:
        self._pending.extend(records)

    def _commit(self) -> None:
        backend = self._backend
        records = backend._records
        by_id = backend._by_id
        streams = backend._streams
        for record in self._pending:
            if record.offset != len(records):
                raise AssertionError("memory backend: non-contiguous offset")  # store bug
            records.append(record)
            by_id[record.event_id] = record.offset
            for stream in record.streams:
                offsets = streams.get(stream)
                if offsets is None:
                    streams[stream] = [record.offset]
                else:
                    offsets.append(record.offset)


class MemoryBackend:
    """Records in a Python list, indexed by event id and by stream.

    Records keep only compact bytes (the serialized payload and 32-byte digests); events
    are decoded when read.
    """

    name = "memory"
    shared = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise ConfigError(
                "memory backend takes no options, got " + ", ".join(sorted(options)),
                key="backend." + sorted(options)[0],
            )
        self._records: list[StoredRecord] = []
        self._by_id: dict[bytes, int] = {}
        self._streams: dict[str, list[int]] = {}
        self._snapshots: dict[int, StoredSnapshot] = {}
        self._lock = threading.RLock()
        self._grew = threading.Condition(self._lock)
        self._waiters = 0

    def head(self) -> Head:
        records = self._records
        if not records:
            return Head(0, GENESIS_CHAIN_HASH)
        last = records[-1]
        return Head(last.offset + 1, last.chain_hash)

    def write(self) -> _MemoryTransaction:
        return _MemoryTransaction(self)

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        records = self._records
        end = min(end, len(records))
        # Index one at a time rather than slicing: a large read must not copy the log.
        for offset in range(start, end):
            yield records[offset]

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        offsets = self._streams.get(stream)
        if not offsets:
            return
        records = self._records
        # Offsets only ever grow, so bisect finds the start; walking by index to the length
        # seen now neither copies the index nor trips over concurrent appends.
        position = bisect_left(offsets, start)
        stop = len(offsets)
        while position < stop:
            offset = offsets[position]
            if end is not None and offset >= end:
                return
            yield records[offset]
            position += 1

    def find(self, event_id: bytes) -> int | None:
        return self._by_id.get(event_id)

    def stream_version(self, stream: str) -> int:
        offsets = self._streams.get(stream)
        return 0 if offsets is None else len(offsets)

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        with self._lock:
            self._snapshots[snapshot.offset] = snapshot

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        with self._lock:
            candidates = [o for o in self._snapshots if before is None or o <= before]
            return self._snapshots[max(candidates)] if candidates else None

    def wait(self, length: int, timeout: float) -> bool:
        with self._grew:
            self._waiters += 1
            try:
                return self._grew.wait_for(lambda: len(self._records) > length, timeout)
            finally:
                self._waiters -= 1

    def close(self) -> None:
        """Nothing to release; the records stay readable."""
