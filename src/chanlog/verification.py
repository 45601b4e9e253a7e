"""``verify``: what a log proves about itself, and what witnesses prove about it (ADR 0024).

A log proves its own internal consistency: every event id is the hash of its payload,
every chain hash follows from the one before, offsets are dense, the per-stream index the
reads rely on agrees with the streams every payload declares, and every stored snapshot
matches the hash its ``snapshot-created`` event announced. A log cannot prove that nothing
was cut from its end: only a witness of a later head can, and verify checks every one it
is given or finds (a head the backend remembered, the stored snapshots).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Protocol, cast

import attrs
import orjson

from chanlog.arguments import items_once
from chanlog.backends.base import Backend
from chanlog.backends.capabilities import ExposesStreamIndex, RemembersHead
from chanlog.codec import canonical_json_of_payload
from chanlog.errors import DecodeError, IntegrityError, InvalidArgument
from chanlog.events.base import Event
from chanlog.events.system import SnapshotCreated
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next, event_digest, keccak256
from chanlog.records import Head, StoredRecord, StoredSnapshot, Witness
from chanlog.serializers import Serializer
from chanlog.snapshots.manager import stored_snapshot

__all__ = ["VerifyReport", "parse_witness", "verify_log"]

_PROGRESS_EVERY = 1000


class EventTypes(Protocol):
    """What verify needs to know of the event types (a store's decoder)."""

    @property
    def types(self) -> Mapping[str, type[Event]]:
        """Wire name → event class."""
        ...

    serializer: Serializer


@attrs.frozen
class VerifyReport:
    """What :func:`verify_log` checked (it raises at the first failure).

    Attributes:
        records: records checked (ids, chain, offsets, streams).
        head: the head of the verified log.
        witnesses: the witnesses the log was held against, and agreed with.
        snapshots: stored snapshots checked against their ``snapshot-created`` events.
        index_entries: per-stream index entries compared with the payloads (``None``:
            the backend exposes no index, reads derive streams from the records).
        unregistered: records of event types no installed plugin defines (their streams
            are taken as stored: nothing else declares them).
    """

    records: int
    head: Head
    witnesses: tuple[Witness, ...] = ()
    snapshots: int = 0
    index_entries: int | None = None
    unregistered: int = 0


def parse_witness(text: str, source: str = "--expect-head") -> Witness:
    """A witness from ``OFFSET:HASH`` (as ``chanlog verify`` prints a head).

    Raises:
        InvalidArgument: naming what is wrong with ``text``.
    """
    offset_text, _, hash_text = text.strip().partition(":")
    try:
        offset = int(offset_text)
        chain_hash = bytes.fromhex(hash_text.removeprefix("0x"))
    except ValueError:
        offset, chain_hash = -1, b""
    if offset < 0 or len(chain_hash) != 32:
        raise InvalidArgument(
            f"{source}: expected OFFSET:HASH (an offset >= 0 and 32 bytes of hex), got {text!r}"
        )
    return Witness(offset, chain_hash, source)


class _Scan:
    """State of one pass over the log."""

    def __init__(self, backend: Backend, decoder: EventTypes) -> None:
        self.decoder = decoder
        self.chain = GENESIS_CHAIN_HASH
        self.announced: dict[int, tuple[int, bytes]] = {}  # snapshot offset → (event offset, hash)
        self.unregistered = 0
        self.index_entries: int | None = None
        self._index: Iterator[tuple[str, int]] | None = None
        self._pending: tuple[str, int] | None = None
        if isinstance(backend, ExposesStreamIndex):
            self._index = backend.stream_index()
            self.index_entries = 0
        serializer = decoder.serializer
        self._canonical: Callable[[bytes], bytes] | None = (
            None
            if serializer.canonical
            else lambda payload: canonical_json_of_payload(serializer.loads(payload))
        )
        self._loads: Callable[[bytes], Any] = (
            orjson.loads if serializer.canonical else serializer.loads
        )

    def check(self, stored: StoredRecord, offset: int) -> None:
        if stored.offset != offset:
            raise IntegrityError(
                f"offset {offset}: record missing (next stored record is at {stored.offset})",
                offset=offset,
            )
        payload = stored.payload
        if type(payload) is not bytes:
            raise IntegrityError(
                f"offset {offset}: payload is {type(payload).__name__}, not bytes "
                "(rewritten outside chanlog)",
                offset=offset,
            )
        try:
            canonical = payload if self._canonical is None else self._canonical(payload)
        except DecodeError as exc:
            raise IntegrityError(
                f"offset {offset}: payload unreadable: {exc}", offset=offset
            ) from exc
        try:
            computed = event_digest(stored.event_type, canonical)
        except UnicodeEncodeError as exc:
            raise IntegrityError(
                f"offset {offset}: event type unreadable: {exc}", offset=offset
            ) from exc
        if computed != stored.event_id:
            raise IntegrityError(
                f"offset {offset}: event id does not match its payload "
                f"(stored 0x{stored.event_id.hex()}, computed 0x{computed.hex()})",
                offset=offset,
            )
        self.chain = chain_next(self.chain, computed)
        if self.chain != stored.chain_hash:
            raise IntegrityError(f"offset {offset}: chain hash does not match", offset=offset)
        self._check_streams(stored, offset)

    def _check_streams(self, stored: StoredRecord, offset: int) -> None:
        cls = self.decoder.types.get(stored.event_type)
        if cls is None:
            self.unregistered += 1
            streams = stored.streams
        else:
            fields = self._loads(stored.payload)
            declared = (fields.get(name) for name in cls.stream_fields)
            streams = tuple(value.lower() for value in declared if type(value) is str)
            if streams != tuple(stored.streams):
                raise IntegrityError(
                    f"offset {offset}: the record is filed under streams {list(stored.streams)}"
                    f" but its payload declares {list(streams)}",
                    offset=offset,
                )
            if cls is SnapshotCreated:
                self._announce(fields, offset)
        if self._index is not None:
            self._check_index(self._index, offset, streams)

    def _announce(self, fields: dict[str, Any], offset: int) -> None:
        snapshot_hash = bytes.fromhex(str(fields.get("snapshot_hash", "")).removeprefix("0x"))
        self.announced[int(fields.get("snapshot_offset", -1))] = (offset, snapshot_hash)

    def announce_since(self, backend: Backend, start: int) -> int:
        """Take in the announcements of the snapshot-created events committed from offset
        ``start`` (the log's length when verify read it, or where the previous call ended)
        to the log's end now, and return that end. A snapshot a writer took meanwhile is
        stored with its event, in one transaction, so once the snapshot is seen the log
        holds its event. Those records are not verified by this pass."""
        end = backend.head().length
        for stored in backend.read(start, end):
            if self.decoder.types.get(stored.event_type) is SnapshotCreated:
                self._announce(self._loads(stored.payload), stored.offset)
        return max(start, end)

    def _next_entry(self, index: Iterator[tuple[str, int]]) -> tuple[str, int] | None:
        """The next index entry: the one put back by the previous offset, or a new one."""
        entry = self._pending if self._pending is not None else next(index, None)
        self._pending = None
        return entry

    def _check_index(
        self, index: Iterator[tuple[str, int]], offset: int, streams: tuple[str, ...]
    ) -> None:
        """The index entries at ``offset`` must be exactly the payload's streams, each once
        (an event may name one entity twice: its stream holds it once)."""
        found: list[str] = []
        while (entry := self._next_entry(index)) is not None:
            stream, at = entry
            if at < offset:
                raise IntegrityError(
                    f"offset {at}: the stream index files it under {stream!r}, which its "
                    "payload does not declare",
                    offset=at,
                )
            if at > offset:
                self._pending = entry  # the next offset's
                break
            found.append(stream)
        self.index_entries = (self.index_entries or 0) + len(found)
        if sorted(found) != sorted(set(streams)):
            missing = sorted(set(streams) - set(found))
            extra = sorted(set(found) - set(streams))
            raise IntegrityError(
                f"offset {offset}: the stream index disagrees with the payload "
                f"(missing {missing}, extra {extra}): reads of those streams would be wrong",
                offset=offset,
            )

    def close(self) -> None:
        """Give back what the index iteration holds (a PostgreSQL cursor, a SQLite read
        snapshot), also when verify stops at a failure."""
        index = self._index
        if isinstance(index, Generator):
            index.close()

    def finish(self, backend: Backend) -> None:
        """Index entries beyond the last record checked point at records that do not exist,
        unless they were committed since verify read the log's length: the index is read as
        of when its iteration began, later, so it may hold records a writer appended
        meanwhile, but none past the log's length once it has begun."""
        if self._index is None:
            return
        entry = self._next_entry(self._index)
        if entry is None:
            return
        now = backend.head().length
        beyond = next(
            (later for later in itertools.chain((entry,), self._index) if later[1] >= now), None
        )
        if beyond is not None:
            raise IntegrityError(
                f"offset {beyond[1]}: the stream index holds {beyond[0]!r} at an offset the "
                f"log ({now} records) does not have: records were cut",
                offset=min(beyond[1], now),
            )


def _check_snapshots(backend: Backend, scan: _Scan, length: int) -> int:
    """Every stored snapshot must match the hash its latest ``snapshot-created`` event
    announced, and be announced by one: a snapshot the log does not announce is the trace
    of a cut tail (or of a snapshot added outside chanlog)."""
    checked = 0
    before: int | None = None
    read_to = length  # the announcements are those of the records before it
    while before is None or before >= 0:
        try:
            snapshot = stored_snapshot(backend, before)
        except DecodeError as exc:  # a row the backend cannot read: changed outside chanlog
            unreadable = min(cast(int, exc.offset), length)
            raise IntegrityError(f"offset {unreadable}: {exc}", offset=unreadable) from exc
        if snapshot is None:
            break
        announced = scan.announced.get(snapshot.offset)
        matches = _announced_as(snapshot, announced)
        if not matches and backend.head().length > read_to:
            # A writer took it while verify read, or took it again at an offset whose
            # earlier announcement verify read (a snapshot replaces the one stored there):
            # its announcement is among the records committed since (ADR 0050, ADR 0056).
            read_to = scan.announce_since(backend, read_to)
            announced = scan.announced.get(snapshot.offset)
            matches = _announced_as(snapshot, announced)
        if announced is None:
            raise IntegrityError(
                f"offset {min(snapshot.offset, length)}: a snapshot of the first "
                f"{snapshot.offset} records is stored but no snapshot-created event in the "
                f"log ({length} records) announces it: the log's tail was cut",
                offset=min(snapshot.offset, length),
            )
        if not matches:
            raise IntegrityError(
                f"offset {announced[0]}: the snapshot at offset {snapshot.offset} does not "
                "match the hash its snapshot-created event announced (changed outside chanlog)",
                offset=announced[0],
            )
        checked += 1
        before = snapshot.offset - 1
    return checked


def _announced_as(snapshot: StoredSnapshot, announced: tuple[int, bytes] | None) -> bool:
    """Whether ``snapshot``'s bytes and hash are those ``announced`` (event offset, hash)."""
    return (
        announced is not None
        and snapshot.snapshot_hash == announced[1]
        and keccak256(snapshot.data) == announced[1]
    )


def _hold_against(witness: Witness, length: int, chain_at: dict[int, bytes]) -> None:
    if witness.offset >= length:
        raise IntegrityError(
            f"offset {length}: {witness.source} saw the log reach offset {witness.offset}, "
            f"but it has {length} records: records were cut from its tail",
            offset=length,
        )
    if chain_at[witness.offset] != witness.chain_hash:
        raise IntegrityError(
            f"offset {witness.offset}: the chain hash differs from what {witness.source} "
            f"saw (0x{witness.chain_hash.hex()}): the log was rewritten from there or before",
            offset=witness.offset,
        )


def _witnesses(witnesses: object) -> list[Witness]:
    held = items_once(witnesses, lambda: f"witnesses must be a list of heads, got {witnesses!r}")
    for witness in held:
        if not isinstance(witness, Witness):
            raise InvalidArgument(f"witnesses must be heads (Witness), got {witness!r}")
    return held


def verify_log(
    backend: Backend,
    decoder: EventTypes,
    *,
    witnesses: Iterable[Witness] = (),
    progress: Callable[[int, int], Any] | None = None,
) -> VerifyReport:
    """Check every record, the stream index, the snapshots and every witness.

    Raises:
        IntegrityError: naming the first offset that fails (see :class:`VerifyReport`).
        InvalidArgument: ``progress`` cannot be called, or a witness is not a
            :class:`~chanlog.records.Witness` (before anything is read).
    """
    if progress is not None and not callable(progress):
        raise InvalidArgument(f"progress must be callable, got {progress!r}")
    held = _witnesses(witnesses)
    if isinstance(backend, RemembersHead):
        remembered = backend.remembered_head()
        if remembered is not None and remembered.length > 0:
            held.append(
                Witness(remembered.length - 1, remembered.chain_hash, "the head chanlog remembered")
            )
    wanted = {witness.offset for witness in held}
    chain_at: dict[int, bytes] = {}
    total = backend.head().length
    scan = _Scan(backend, decoder)
    offset = 0
    try:
        for stored in backend.read(0, total):
            scan.check(stored, offset)
            if offset in wanted:
                chain_at[offset] = scan.chain
            offset += 1
            if progress is not None and offset % _PROGRESS_EVERY == 0:
                progress(offset, total)
        if offset != total:
            raise IntegrityError(
                f"offset {offset}: log ends early ({offset} of {total} records)", offset=offset
            )
        scan.finish(backend)
    finally:
        scan.close()
    snapshots = _check_snapshots(backend, scan, total)
    for witness in held:
        _hold_against(witness, total, chain_at)
    if progress is not None:
        progress(total, total)
    return VerifyReport(
        records=total,
        head=Head(total, scan.chain),
        witnesses=tuple(held),
        snapshots=snapshots,
        index_entries=scan.index_entries,
        unregistered=scan.unregistered,
    )
