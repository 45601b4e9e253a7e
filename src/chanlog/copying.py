"""Copying a log exactly: the export line format, and an import that puts every record at
its exported offset with its exported chain hash (ADR 0032).

``chanlog export`` writes one line per record: the event envelope (``type``, ``payload``)
and where it sits in the log (``offset``, ``event_id``, ``chain_hash``). The line is written
from the stored record, never from a decoded event (:func:`export_line_of`): its payload is
the canonical JSON the event id hashes, so a record of a type no installed plugin registers
is exported as it would be with the plugin, byte for byte (ADR 0063). :class:`LogCopy`
appends such records to a store so that the store's log is the exported one, record for
record: the same offsets, ids and chain hashes, so ``verify --expect-head`` with the
original's head passes. It appends through :meth:`~chanlog.EventStore.append_at`, so the
importing store's snapshot policy adds nothing of its own; the exported log's own
``snapshot-created`` events are copied like any other record, and the snapshot each one
announces is rebuilt and stored, in the transaction of its announcement, when the
importing store's projections encode to the hash it announces (and the importing store's
retention applies, as after its own snapshots).

The importing log must be empty, or hold a prefix of the export (an earlier, interrupted
import, or the copy made before ``export --from N``): its records are compared with the
export's, and the rest is appended after them, the snapshots rebuilt on the newest one the
earlier import stored (ADR 0055). Anything else is refused before it is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import orjson

from chanlog import codec, fields
from chanlog.errors import (
    ConcurrencyError,
    DecodeError,
    IntegrityError,
    InvalidEvent,
    InvalidTransition,
)
from chanlog.events.base import Event
from chanlog.events.system import SnapshotCreated
from chanlog.hashing import chain_next
from chanlog.records import RecordedEvent, StoredRecord, StoredSnapshot
from chanlog.serializers import Serializer
from chanlog.snapshots.incremental import SnapshotChain, chain_of, encode_incremental
from chanlog.store import EventStore

__all__ = [
    "ExportedRecord",
    "LogCopy",
    "canonical_payload",
    "export_line",
    "export_line_of",
    "is_export_line",
    "parse_export_line",
]


def export_line(record: RecordedEvent) -> dict[str, Any]:
    """The export format as a dict: the import envelope plus where the event sits in the
    log; its ``payload`` keys in canonical (sorted) order, so that ``orjson.dumps`` of it
    is the line :func:`export_line_of` writes for the stored record."""
    return {
        "offset": record.offset,
        "event_id": record.event_id,
        "type": record.event_type,
        "payload": orjson.loads(codec.canonical_json(record.event)),
        "chain_hash": record.chain_hash,
    }


def canonical_payload(stored: StoredRecord, serializer: Serializer) -> bytes:
    """The canonical JSON of a stored record's payload (the bytes its event id hashes),
    read without decoding its event: the stored bytes themselves under a canonical
    serializer (``json``), else the serializer's payload written as canonical JSON, as
    ``verify`` hashes it. Whether the type is registered does not matter.

    Raises:
        IntegrityError: the payload is not a JSON object (or does not load with the
            serializer), naming the offset: the log was changed outside chanlog.
    """
    payload = stored.payload
    try:
        if type(payload) is not bytes:
            raise DecodeError(f"{type(payload).__name__}, not bytes")
        if not serializer.canonical:
            return codec.canonical_json_of_payload(serializer.loads(payload))
        # Parsed only to be sure the line written around it is JSON.
        fields = orjson.loads(payload)
    except (DecodeError, ValueError) as exc:  # orjson's JSONDecodeError is a ValueError
        problem: str = str(exc)
    else:
        if type(fields) is dict:
            return payload
        problem = f"a JSON {type(fields).__name__}, not an object"
    raise IntegrityError(
        f"offset {stored.offset}: the stored {stored.event_type} payload does not parse "
        f"({problem}); the log was changed outside chanlog",
        offset=stored.offset,
    )


def export_line_of(
    stored: StoredRecord, payload: bytes, extra: Mapping[str, Any] | None = None
) -> bytes:
    """The export line of a stored record (without its newline), around ``payload``, its
    :func:`canonical_payload`, copied verbatim: the same bytes whether or not a plugin
    registers the record's type (ADR 0063). ``extra`` fields follow the export's own
    (``chanlog log --json`` marks a record of an unregistered type so)."""
    return orjson.dumps(
        {
            "offset": stored.offset,
            "event_id": "0x" + stored.event_id.hex(),
            "type": stored.event_type,
            "payload": orjson.Fragment(payload),
            "chain_hash": "0x" + stored.chain_hash.hex(),
            **(extra or {}),
        }
    )


def is_export_line(value: Any) -> bool:
    """Whether ``value`` says where its record sits (has an ``offset``): an export line,
    as opposed to a bare ``{"type", "payload"}`` envelope."""
    return isinstance(value, Mapping) and "offset" in value


@attrs.frozen
class ExportedRecord:
    """One record of an exported log.

    Attributes:
        offset: where it sits in the exported log.
        event: the event (its id checked against the line's ``event_id``).
        raw_id: the event id as bytes.
        chain_hash: the exported chain hash, as bytes.
        where: where it was read (``"log.jsonl:7"``), for messages.
    """

    offset: int
    event: Event
    raw_id: bytes
    chain_hash: bytes
    where: str


def parse_export_line(value: Any, types: Mapping[str, type[Event]], where: str) -> ExportedRecord:
    """Decode one export line: an envelope with ``offset``, ``event_id`` and ``chain_hash``.

    Raises:
        DecodeError: naming ``where`` and the field: not an export line, a field of the
            wrong form, an ``event_id`` that does not match the payload, or a type that is
            not in ``types`` (naming it: its plugin is not installed).
    """
    if not is_export_line(value):
        raise DecodeError(
            f"{where}: not an export line (it has no offset), though the lines before it are",
            path="offset",
        )
    offset = value["offset"]
    if type(offset) is not int or offset < 0:
        raise DecodeError(f"{where}: offset must be an int >= 0, got {offset!r}", path="offset")
    if "event_id" not in value:
        raise DecodeError(f"{where}: an export line needs its event_id", path="event_id")
    # Checked here: the envelope's own check takes a null event_id for none given.
    raw_id = _hash32(value["event_id"], where, "event_id")
    try:
        event = codec.decode_envelope(value, types)
    except DecodeError as exc:
        message = str(exc)
        if exc.event_type is not None and exc.event_type not in types:
            # Not copied as it is: the type's class says which entities the record belongs
            # to, and the copy's stream index files it under them (ADR 0063).
            message = (
                f"event type {exc.event_type!r} is not registered: install the plugin that "
                "defines it (not skipped by CHANLOG_DISABLE_PLUGINS or CHANLOG_LOAD_PLUGINS) "
                "to import its records"
            )
        raise DecodeError(f"{where}: {message}", event_type=exc.event_type, path=exc.path) from exc
    return ExportedRecord(
        offset, event, raw_id, _hash32(value.get("chain_hash"), where, "chain_hash"), where
    )


def _hash32(value: Any, where: str, field: str) -> bytes:
    text = value if isinstance(value, str) else ""
    try:
        raw = bytes.fromhex(text.removeprefix("0x")) if text.startswith("0x") else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise DecodeError(
            f"{where}: {field} must be '0x' + 64 hex digits, got {value!r}", path=field
        )
    return raw


class LogCopy:
    """Copies exported records into ``store``, each at its exported offset.

    Give it the export's records in order, a batch at a time (:meth:`add`). Each batch is
    checked whole before anything of it is written: offsets follow one another, records the
    log already holds are the same records, and every new record's chain hash follows from
    the one before it. Then it is appended in atomic pieces (split before each
    ``snapshot-created``); a refused piece writes nothing, and the pieces before it stay.

    Attributes:
        appended: records appended so far.
        present: records the log already held (the same ones, at the same offsets).
        snapshots: snapshots rebuilt and stored.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._previous: ExportedRecord | None = None
        self.appended = 0
        self.present = 0
        self.snapshots = 0
        self._chain: SnapshotChain | None = None  # the last snapshot rebuilt

    def add(self, records: Sequence[ExportedRecord]) -> None:
        """Copy the next ``records`` of the export.

        Raises:
            DecodeError: the offsets do not follow one another, or a chain hash does not
                follow from the record before it (the export was changed or cut).
            ConcurrencyError: the log holds a different record at one of the offsets, or
                ends before the first one; or another writer appended meanwhile.
            InvalidTransition, InvalidEvent: the importing store's projections refuse an
                event (the message names the line; nothing of its piece was written), or
                a record's entity id holds a NUL, which no backend stores (ADR 0070; checked
                for the whole of ``records`` before any of them is written).
        """
        head = self._store.backend.head()
        if self._previous is None and head.length:
            self._chain = self._resumed(head.length)
        held = self._held(records, head.length)
        chain = head.chain_hash
        new: list[ExportedRecord] = []
        for record in records:
            self._check_follows(record, head.length)
            if record.offset < head.length:
                self._check_same(record, held[record.offset])
                chain = record.chain_hash
            else:
                chain = self._check_chain(record, chain)
                new.append(record)
            self._previous = record
        self.present += len(records) - len(new)
        for record in new:  # before any piece is written (ADR 0070)
            _check_entity_ids(record)
        for piece in _pieces(new):
            self._append(piece)

    def _resumed(self, length: int) -> SnapshotChain | None:
        """The chain of the newest snapshot stored in a log holding the export's first
        ``length`` records (``None`` without one): an earlier, interrupted import rebuilt it,
        and the export's next snapshot may be incremental on it (ADR 0055)."""
        store = self._store
        if not store.projections:
            return None
        latest = store.snapshots.latest_snapshot(length)
        return None if latest is None else chain_of(store.snapshots.open(latest))

    def _held(
        self, records: Sequence[ExportedRecord], length: int
    ) -> dict[int, tuple[bytes, bytes]]:
        """``offset -> (event id, chain hash)`` of the records the log already holds at
        the offsets of ``records``."""
        first = min((record.offset for record in records), default=length)
        last = max((record.offset for record in records), default=first - 1) + 1
        return {
            stored.offset: (stored.event_id, stored.chain_hash)
            for stored in self._store.backend.read(first, min(last, length))
        }

    def _check_follows(self, record: ExportedRecord, length: int) -> None:
        previous = self._previous
        if previous is None:
            if record.offset > length:
                raise ConcurrencyError(
                    f"{record.where}: the export starts at offset {record.offset}, but the log "
                    f"holds {length} records: import the records before it first (nothing "
                    "was written)",
                    stream="",
                    expected=record.offset,
                    actual=length,
                )
        elif record.offset != previous.offset + 1:
            raise DecodeError(
                f"{record.where}: offset {record.offset} follows offset {previous.offset} "
                f"({previous.where}): the export is not in order, or lines are missing",
                path="offset",
            )

    @staticmethod
    def _check_same(record: ExportedRecord, held: tuple[bytes, bytes]) -> None:
        event_id, chain_hash = held
        if event_id != record.raw_id or chain_hash != record.chain_hash:
            raise ConcurrencyError(
                f"{record.where}: the log already holds another record at offset "
                f"{record.offset} (event 0x{event_id.hex()}): it is not a copy of the "
                "beginning of this export; import into an empty log (nothing was written)",
                stream="",
                expected=record.offset,
                actual=record.offset,
            )

    @staticmethod
    def _check_chain(record: ExportedRecord, previous: bytes) -> bytes:
        expected = chain_next(previous, record.raw_id)
        if expected != record.chain_hash:
            raise DecodeError(
                f"{record.where}: chain_hash 0x{record.chain_hash.hex()} does not follow from "
                f"the record before it (0x{expected.hex()} does): the export was changed",
                event_type=record.event.event_type,
                path="chain_hash",
            )
        return expected

    def _append(self, piece: list[ExportedRecord]) -> None:
        store = self._store
        rebuilt = _announced_snapshot(store, piece[0], self._chain)
        snapshot = None if rebuilt is None else rebuilt[0]
        try:
            store.append_at(piece[0].offset, [record.event for record in piece], snapshot)
        except (InvalidTransition, InvalidEvent, ConcurrencyError) as exc:
            # Name the line of the record refused, as the CLI names lines everywhere else.
            if isinstance(exc, ConcurrencyError):
                index: int | None = exc.expected - piece[0].offset
            else:
                index = exc.index
            where = piece[index].where if index is not None and 0 <= index < len(piece) else ""
            message = str(exc).removeprefix(f"batch[{index}]: ")
            exc.args = (f"{where or piece[0].where}: {message}",)
            raise
        self.appended += len(piece)
        if rebuilt is not None:
            # Stored with its announcement (ADR 0055): a kill between two commits would
            # leave it missing, and the incremental snapshots after it unrebuildable.
            self._chain = rebuilt[1]
            self.snapshots += 1
            # The importing store's retention, as after a snapshot it takes itself: a copy
            # of a long log would otherwise keep every snapshot the export announces.
            store.prune_snapshots()


def _check_entity_ids(record: ExportedRecord) -> None:
    """Refuse, naming its line, a record whose entity id no backend may store (ADR 0070):
    checked for a whole batch before any piece of it is appended."""
    check = fields.entity_id_check(type(record.event))
    if check is None:
        return
    try:
        check(record.event)
    except InvalidEvent as exc:
        exc.args = (f"{record.where}: {exc}",)
        raise


def _pieces(records: list[ExportedRecord]) -> list[list[ExportedRecord]]:
    """``records`` split before every snapshot announcement (whose snapshot can only be
    rebuilt from the projections as they stand just before it)."""
    pieces: list[list[ExportedRecord]] = []
    for record in records:
        if not pieces or _announces_itself(record):
            pieces.append([])
        pieces[-1].append(record)
    return pieces


def _announces_itself(record: ExportedRecord) -> bool:
    event = record.event
    return type(event) is SnapshotCreated and event.snapshot_offset == record.offset


def _announced_snapshot(
    store: EventStore, record: ExportedRecord, chain: SnapshotChain | None
) -> tuple[StoredSnapshot, SnapshotChain] | None:
    """The snapshot ``record`` announces, from ``store``'s projections as they stand (the
    log ends just before ``record``), when they encode to the announced hash: incremental
    on the snapshot rebuilt before it (``chain``), as the exporting store would have taken
    it (ADR 0036), or whole; else ``None`` (other projections or versions: the copy then
    has no snapshot there)."""
    event = record.event
    projections = store.projections
    if not projections or type(event) is not SnapshotCreated or not _announces_itself(record):
        return None
    for previous in (chain, None) if chain is not None else (None,):
        snapshot, rebuilt = encode_incremental(record.offset, projections, previous)
        if "0x" + snapshot.snapshot_hash.hex() == event.snapshot_hash:
            return snapshot, rebuilt
    return None
