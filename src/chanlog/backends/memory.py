"""The in-memory backend: the default of ``EventStore()``. Nothing touches the disk.

Besides the :class:`~chanlog.backends.base.Backend` protocol it implements
:class:`~chanlog.backends.capabilities.ReadsStreamPayloads`,
:class:`~chanlog.backends.capabilities.ExposesStreamIndex`,
:class:`~chanlog.backends.capabilities.MayBeReadOnly` and
:class:`~chanlog.backends.consumer_store.KeepsConsumers` and
:class:`~chanlog.backends.capabilities.RecordsSerializer`; its transactions implement
:class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`,
:class:`~chanlog.backends.capabilities.AppendsUnlessKnown` and
:class:`~chanlog.backends.consumer_store.MovesConsumersInTransaction`.
"""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from chanlog.backends.memory_consumers import ConsumerTable
from chanlog.errors import ConfigError, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import (
    ConsumerState,
    Head,
    ParkedRecord,
    PositionMove,
    StoredRecord,
    StoredSnapshot,
)

__all__ = ["MemoryBackend", "MemoryTransaction"]


class MemoryTransaction:
    """The writer lock and the staged records (and snapshots) of one write; a context
    manager. Nothing staged is visible until it commits, all of it at once."""

    __slots__ = ("_after", "_backend", "_moves", "_pending", "head")

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._pending: list[StoredRecord] = []
        # Snapshots and consumer moves, applied in order after the records (most
        # transactions have none, so the list is made on first use).
        self._after: list[Callable[[], object]] | None = None
        self._moves: list[PositionMove] = []  # staged consumer moves, to check the next ones

    def __enter__(self) -> MemoryTransaction:
        backend = self._backend
        if backend.read_only:
            raise StorageError("memory backend: opened read-only; writes are refused")
        backend._lock.acquire()
        self.head = backend._head
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        backend = self._backend
        try:
            if exc_type is None:
                if self._pending:
                    backend._commit(self._pending)
                    if backend._waiters:
                        backend._grew.notify_all()
                # After the records: a snapshot never describes records that are not there.
                if self._after is not None:
                    for apply in self._after:
                        apply()
        finally:
            backend._lock.release()

    def _then(self, apply: Callable[[], object]) -> None:
        if self._after is None:
            self._after = []
        self._after.append(apply)

    def find(self, event_id: bytes) -> int | None:
        return self._backend._by_id.get(event_id)

    def stream_version(self, stream: str) -> int:
        return self._backend.stream_version(stream)

    def append(self, records: Sequence[StoredRecord]) -> None:
        self._pending.extend(records)

    def append_unless_known(self, records: Sequence[StoredRecord]) -> bool:
        """Append ``records`` unless an event id among them is in the log or already
        staged in this transaction (then append none and return False)."""
        by_id = self._backend._by_id
        pending = self._pending
        staged = {record.event_id for record in pending} if pending else ()
        for record in records:
            if record.event_id in by_id or record.event_id in staged:
                return False
        pending.extend(records)
        return True

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        """Store ``snapshot`` when the transaction commits, after its records."""
        backend = self._backend
        self._then(lambda: backend._store_snapshot(snapshot))

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets`` when the transaction commits; return how many
        of them there are."""
        backend = self._backend
        doomed = sorted(set(offsets))
        self._then(lambda: backend._delete_snapshots(doomed))
        return sum(1 for offset in doomed if offset in backend._snapshots)

    def move_consumer(self, move: PositionMove) -> None:
        """Check ``move`` now (after the moves staged before it); apply it when the
        transaction commits, after its records."""
        consumers = self._backend._consumers
        consumers.check(move, self._moves)
        self._moves.append(move)
        self._then(lambda: consumers.apply(move))


class MemoryBackend:
    """Records kept as compact columns, indexed by event id and by stream.

    A log held in memory should cost about what its payloads cost, so records are not kept as
    objects: payloads and ids sit in lists (an id is the same object as its index key), chain
    hashes are packed 32 bytes apiece into a bytearray, the type is a one-byte index, and
    records of one entity share one interned tuple of stream keys.
    :class:`~chanlog.records.StoredRecord` objects are built on read.
    """

    name = "memory"
    shared = False

    def __init__(self, *, read_only: bool = False, **options: Any) -> None:
        if options:
            raise ConfigError(
                "memory backend takes no options but read_only, got " + ", ".join(sorted(options)),
                key="backend." + sorted(options)[0],
            )
        if not isinstance(read_only, bool):
            raise ConfigError(
                f"memory backend: read_only must be true or false, got {read_only!r}",
                key="backend.read_only",
            )
        self.read_only = read_only
        """True when this log refuses every write (it then stays empty: a memory log has
        no other handle to fill it)."""
        self._payloads: list[bytes] = []
        self._ids: list[bytes] = []  # the same objects as the keys of _by_id
        self._chains = bytearray()
        self._type_codes = bytearray()
        self._type_names: list[str] = []
        self._type_index: dict[str, int] = {}
        self._stream_keys: list[tuple[str, ...]] = []
        self._interned: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._by_id: dict[bytes, int] = {}
        self._streams: dict[str, list[int]] = {}
        self._snapshots: dict[int, StoredSnapshot] = {}
        self._snapshot_offsets: list[int] = []  # sorted, for bisect
        self._lock = threading.RLock()
        self._grew = threading.Condition(self._lock)
        self._waiters = 0
        self._head = Head(0, GENESIS_CHAIN_HASH)  # replaced, never mutated, at each commit
        self._consumers = ConsumerTable()
        self._serializer: str | None = None

    def __len__(self) -> int:
        return len(self._payloads)

    def head(self) -> Head:
        return self._head

    def write(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    def _commit(self, pending: Sequence[StoredRecord]) -> None:
        # Everything that can refuse runs before any column changes, so a refused batch
        # leaves no partial trace (the columns must stay in step with one another).
        codes: list[int] = []
        expected = len(self._payloads)
        for record in pending:
            if record.offset != expected:
                raise AssertionError("memory backend: non-contiguous offset")  # a store bug
            code = self._type_index.get(record.event_type)
            codes.append(self._intern_type(record.event_type) if code is None else code)
            expected += 1
        for record, code in zip(pending, codes, strict=True):
            offset = record.offset
            streams = self._interned.setdefault(record.streams, record.streams)
            self._payloads.append(record.payload)
            self._ids.append(record.event_id)
            self._chains += record.chain_hash
            self._type_codes.append(code)
            self._stream_keys.append(streams)
            self._by_id[record.event_id] = offset
            # An event may name one entity twice (a message whose id is its objective's):
            # its stream holds it once, as on every backend.
            for stream in streams if len(streams) < 2 else dict.fromkeys(streams):
                offsets = self._streams.get(stream)
                if offsets is None:
                    self._streams[stream] = [offset]
                else:
                    offsets.append(offset)
        last = pending[-1]
        self._head = Head(last.offset + 1, last.chain_hash)

    def _intern_type(self, event_type: str) -> int:
        code = len(self._type_names)
        if code > 255:
            raise StorageError(
                f"memory backend: {event_type!r} would be the 257th event type in one log "
                "(the limit is 256)"
            )
        self._type_names.append(event_type)
        self._type_index[event_type] = code
        return code

    def _record(self, offset: int) -> StoredRecord:
        start = offset * 32
        return StoredRecord(
            offset,
            self._ids[offset],
            self._type_names[self._type_codes[offset]],
            self._stream_keys[offset],
            self._payloads[offset],
            # A slice copies; a memoryview would pin the bytearray, and an append resizing it
            # in another thread would then fail with BufferError.
            bytes(self._chains[start : start + 32]),
        )

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        end = min(end, len(self._payloads))
        # One record at a time rather than a slice: a large read must not copy the log.
        for offset in range(start, end):
            yield self._record(offset)

    def read_stream(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[StoredRecord]:
        offsets = self._streams.get(stream)
        if not offsets:
            return
        # Offsets only ever grow, so bisect finds the start; walking by index to the length
        # seen now neither copies the index nor trips over concurrent appends.
        position = bisect_left(offsets, start)
        stop = len(offsets)
        while position < stop:
            offset = offsets[position]
            if end is not None and offset >= end:
                return
            yield self._record(offset)
            position += 1

    def read_stream_payloads(
        self, stream: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """``(offset, event_type, payload)`` of the records :meth:`read_stream` yields: the
        lean path reconstruction folds over (no record object, no chain-hash copy)."""
        offsets = self._streams.get(stream)
        if not offsets:
            return
        payloads = self._payloads
        names = self._type_names
        codes = self._type_codes
        position = bisect_left(offsets, start)
        stop = len(offsets) if end is None else bisect_left(offsets, end, position)
        while position < stop:
            offset = offsets[position]
            yield offset, names[codes[offset]], payloads[offset]
            position += 1

    def find(self, event_id: bytes) -> int | None:
        return self._by_id.get(event_id)

    def stream_version(self, stream: str) -> int:
        offsets = self._streams.get(stream)
        return 0 if offsets is None else len(offsets)

    def stream_index(self) -> Iterator[tuple[str, int]]:
        """Every ``(stream, offset)`` pair of the offsets-per-stream index the stream reads
        rely on, for the records committed when the iteration starts, ordered by offset then
        stream: the per-stream lists merged (each is already in offset order), not copied."""
        with self._lock:
            length = len(self._payloads)
            streams = list(self._streams.items())
        heads = (_pairs(stream, offsets, length) for stream, offsets in streams)
        # A stream name is unique per list, so (offset, stream) orders pairs totally.
        for offset, stream in heapq.merge(*heads):
            yield stream, offset

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        if self.read_only:
            raise StorageError("memory backend: opened read-only; writes are refused")
        with self._lock:
            self._store_snapshot(snapshot)

    def _store_snapshot(self, snapshot: StoredSnapshot) -> None:
        if snapshot.offset not in self._snapshots:
            insort(self._snapshot_offsets, snapshot.offset)
        self._snapshots[snapshot.offset] = snapshot

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        with self._lock:
            offsets = self._snapshot_offsets
            position = len(offsets) if before is None else bisect_right(offsets, before)
            return self._snapshots[offsets[position - 1]] if position else None

    def snapshot_sizes(self) -> list[tuple[int, int]]:
        """``(offset, bytes)`` of every stored snapshot, by offset (ManagesSnapshots)."""
        with self._lock:
            return [
                (offset, len(self._snapshots[offset].data)) for offset in self._snapshot_offsets
            ]

    def delete_snapshots(self, offsets: Sequence[int]) -> int:
        """Delete the snapshots at ``offsets``; return how many there were."""
        self._writable()
        with self._lock:
            return self._delete_snapshots(offsets)

    def _delete_snapshots(self, offsets: Sequence[int]) -> int:
        gone = [offset for offset in set(offsets) if offset in self._snapshots]
        for offset in gone:
            del self._snapshots[offset]
            self._snapshot_offsets.remove(offset)
        return len(gone)

    def recorded_serializer(self) -> str | None:
        """The serializer recorded by the first writable store on this log."""
        return self._serializer

    def record_serializer(self, name: str) -> str:
        """Record ``name`` unless one is recorded; return the recorded name."""
        if self.read_only:
            raise StorageError("memory backend: opened read-only; writes are refused")
        with self._lock:
            if self._serializer is None:
                self._serializer = name
            return self._serializer

    def wait(self, length: int, timeout: float) -> bool:
        with self._grew:
            self._waiters += 1
            try:
                return self._grew.wait_for(lambda: len(self._payloads) > length, timeout)
            finally:
                self._waiters -= 1

    # -- durable consumers (KeepsConsumers) -------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise StorageError("memory backend: opened read-only; writes are refused")

    def consumer_clock(self) -> float:
        """Unix seconds now, by the clock the consumers' leases are judged with
        (ReadsConsumerClock)."""
        return self._consumers.clock()

    def consumer_state(self, name: str) -> ConsumerState | None:
        with self._lock:
            return self._consumers.get(name)

    def consumer_states(self) -> list[ConsumerState]:
        with self._lock:
            return self._consumers.all()

    def ensure_consumer(self, name: str, position: int, subjects: Sequence[str]) -> ConsumerState:
        self._writable()
        with self._lock:
            return self._consumers.ensure(name, position, subjects)

    def acquire_lease(self, name: str, holder: str, ttl: float) -> ConsumerState:
        self._writable()
        with self._lock:
            return self._consumers.acquire(name, holder, ttl)

    def release_lease(self, name: str, holder: str) -> None:
        self._writable()
        with self._lock:
            self._consumers.release(name, holder)

    def move_consumer(self, move: PositionMove) -> None:
        self._writable()
        with self._lock:
            self._consumers.move(move)

    def reset_consumer(self, name: str, position: int) -> ConsumerState:
        self._writable()
        with self._lock:
            return self._consumers.reset(name, position)

    def parked_records(self, name: str) -> list[ParkedRecord]:
        with self._lock:
            return self._consumers.parked(name)

    def request_replay(self, name: str, offsets: Sequence[int] | None = None) -> int:
        self._writable()
        with self._lock:
            return self._consumers.request_replay(name, offsets)

    def drop_parked(self, name: str, offsets: Sequence[int] | None = None) -> int:
        self._writable()
        with self._lock:
            return self._consumers.drop(name, offsets)

    def delete_consumer(self, name: str) -> bool:
        self._writable()
        with self._lock:
            return self._consumers.delete(name)

    def close(self) -> None:
        """Nothing to release; the records stay readable."""


def _pairs(stream: str, offsets: list[int], length: int) -> Iterator[tuple[int, str]]:
    """``(offset, stream)`` for the offsets of ``stream`` below ``length``: the list only
    grows at its end, so walking it by index up to ``length`` never sees a later commit."""
    for offset in offsets:
        if offset >= length:
            return
        yield offset, stream
