"""The append pipeline: encode → stage → chain → write, inside one write transaction.

Nothing here commits or publishes: the store opens the transaction, and only once the
backend has committed does it make the :class:`CommitResult`'s stage current and hand the
new records to delivery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from chanlog import codec, fields, payloads
from chanlog.arguments import items_once
from chanlog.backends.base import WriteTransaction
from chanlog.backends.capabilities import appends_unless_known, finds_many
from chanlog.errors import (
    ConcurrencyError,
    DecodeError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    PluginError,
)
from chanlog.events.base import Event
from chanlog.folding import InlineProjections, WriteStage
from chanlog.hashing import chain_next
from chanlog.reading import EventDecoder, check_offset
from chanlog.records import Head, RecordedEvent, StoredRecord

__all__ = [
    "AppendPipeline",
    "AppendRequest",
    "CommitResult",
    "Encoded",
    "Work",
    "batch_items",
    "expected_streams",
]


def batch_items(events: object) -> Sequence[Any]:
    """The items of a batch as a sequence (a generator read once).

    Raises:
        InvalidArgument: ``events`` is not a sequence of events: one event, one envelope,
            a string, ``None`` or anything not iterable.
    """
    if isinstance(events, list | tuple):
        return events
    return items_once(
        events,
        lambda: f"events must be a sequence of events or envelopes, got {type(events).__name__}",
        single=(Event, Mapping),
    )


def expected_streams(versions: Mapping[str, int] | None) -> dict[str, int] | None:
    """``expected_versions`` checked, its entity ids lowercased (``None`` when empty).

    Raises:
        InvalidArgument: a key that is not an entity id string, or a version that is not
            an int >= 0.
    """
    if not versions:
        return None
    checked: dict[str, int] = {}
    for stream, version in versions.items():
        if type(stream) is not str:
            raise InvalidArgument(
                f"expected_versions: an entity id must be a string, got {stream!r}"
            )
        check_offset(f"expected_versions[{stream!r}]", version)
        checked[stream.lower()] = version
    return checked


class Encoded(NamedTuple):
    """An event ready to stage: its canonical JSON and raw id (a tuple: one is built per
    appended event)."""

    event: Event
    canonical: bytes
    raw_id: bytes


class CommitResult(NamedTuple):
    """What one write transaction did (a tuple: one is built per append).

    Attributes:
        offsets: the offset of every event given, in order (an event already in the log
            keeps its first offset).
        records: the records written, in offset order (empty: all were known).
        recorded: ``records`` as subscribers receive them, when the pipeline was
            :attr:`~AppendPipeline.recording` (else empty).
        stage: the projections' changes, made current once the backend commits.
    """

    offsets: list[int]
    records: list[StoredRecord]
    recorded: list[RecordedEvent]
    stage: WriteStage | None


Work = Callable[[WriteTransaction, list["Encoded"], dict[str, int] | None, bool], CommitResult]
"""What the store runs inside one write transaction: :meth:`AppendPipeline.write`'s
signature (a snapshot's work, which encodes its own announcement, ignores the rest)."""

_AppendUnlessKnown = Callable[[Any, Sequence[StoredRecord]], bool]
_UNKNOWN: Any = object()


class AppendRequest:
    """One caller's append waiting to be written with others (group commit): what to write,
    and, once the group's transaction is over, its result or its error."""

    __slots__ = ("batch", "done", "encoded", "error", "expected", "leads", "result", "wake")

    def __init__(
        self, encoded: list[Encoded], expected: dict[str, int] | None, batch: bool
    ) -> None:
        self.encoded = encoded
        self.expected = expected
        self.batch = batch
        self.result: CommitResult | None = None
        self.error: BaseException | None = None
        self.done = False
        self.leads = False
        """Set (before :attr:`wake` is released) when its caller is to lead the next group."""
        self.wake: threading.Lock | None = None
        """Held while its caller waits; released when the append is done or when its caller
        is to lead (``None``: its caller never waited)."""


def _where(index: int, batch: bool) -> str:
    return f"batch[{index}]: " if batch else ""


def _at(exc: InvalidEvent, index: int, batch: bool) -> InvalidEvent:
    """``exc`` about the event at ``index`` of a batch (itself outside one)."""
    if not batch:
        return exc
    return InvalidEvent(
        f"{_where(index, batch)}{exc}",
        event_type=exc.event_type,
        field=exc.field,
        rule=exc.rule,
        index=index,
    )


def _checked_encoder(cls: type) -> payloads.RawEncoder:
    """The raw encoder of ``cls``, checking first the entity ids its validators may let
    through (:func:`chanlog.fields.entity_id_check`); the encoder itself when there are
    none, as for every built-in type."""
    encoder = payloads.raw_encoder(cls)
    check = fields.entity_id_check(cls)
    if check is None:
        return encoder

    def checked(event: Any) -> tuple[bytes, str, bytes]:
        check(event)
        return encoder(event)

    return checked


class AppendPipeline:
    """Turns items into records that continue the log, refusing what must be refused.

    Args:
        decoder: the registered event types (and the strict envelope decoder).
        inline: the projections that validate each event.
    """

    def __init__(self, decoder: EventDecoder, inline: InlineProjections) -> None:
        self._decoder = decoder
        self._inline = inline
        self._host = decoder.host
        self._generation = decoder.host.generation
        self._types = decoder.types
        self._encoders: dict[type, payloads.RawEncoder] = {}
        serializer = decoder.serializer
        self._dumps = None if serializer.canonical else serializer.dumps
        # Transaction class → its AppendsUnlessKnown method (None: it has none), looked up
        # without a capability call per append.
        self._unless_known: dict[type, _AppendUnlessKnown | None] = {}
        self.recording = False
        """Whether the next writes build :attr:`CommitResult.recorded` (set by the store,
        under its append lock, when anyone receives committed records)."""

    # -- encoding ------------------------------------------------------------------------

    def as_event(self, item: object, index: int, *, batch: bool) -> Event:
        """Accept an event, or a ``{"type", "payload"}`` envelope decoded strictly; refuse
        anything else or an event type this store's plugins did not register."""
        # Events first: the common case, and a plain class check is ten times cheaper than
        # the Mapping ABC's.
        if isinstance(item, Event):
            # The registry read inline (no property frame per append), fresh as the host.
            if self._generation != self._host.generation:
                self._generation = self._host.generation
                self._types = self._decoder.types
            if self._types.get(item.event_type) is type(item):
                return item
            raise InvalidEvent(
                f"{_where(index, batch)}event type {item.event_type!r} "
                f"({type(item).__name__}) is not registered with this store's plugins",
                event_type=item.event_type,
                index=index if batch else None,
                rule="event type must be registered",
            )
        if isinstance(item, Mapping):
            try:
                return codec.decode_envelope(item, self._decoder.types)
            except DecodeError as exc:
                raise InvalidEvent(
                    f"{_where(index, batch)}{exc}",
                    event_type=exc.event_type,
                    field=exc.path,
                    rule="payload must decode",
                    index=index if batch else None,
                ) from exc
        raise InvalidEvent(
            f"{_where(index, batch)}expected a chanlog Event or an envelope, "
            f"got {type(item).__name__}",
            index=index if batch else None,
            rule="must be a chanlog.Event",
        )

    def primary_stream(self, item: Event | Mapping[str, Any]) -> str:
        """The first stream of ``item``: what ``expected_version`` applies to."""
        event = self.as_event(item, 0, batch=False)
        if not event.streams:
            raise InvalidEvent(
                f"{event.event_type} belongs to no entity stream; expected_version cannot apply",
                event_type=event.event_type,
                rule="expected_version needs an entity stream",
            )
        return event.streams[0]

    def encode(self, items: Sequence[object], *, batch: bool) -> list[Encoded]:
        """Check and encode ``items`` (outside any lock: encoding is the costly part)."""
        encoded: list[Encoded] = []
        if self._generation != self._host.generation:
            self._generation = self._host.generation
            self._types = self._decoder.types
        types = self._types
        encoders = self._encoders
        max_bytes = payloads.MAX_PAYLOAD_BYTES
        for index, item in enumerate(items):
            cls = type(item)
            # as_event() inlined for a registered event, the common case: this runs for
            # every appended event.
            if isinstance(item, Event) and types.get(item.event_type) is cls:
                event = item
            else:
                event = self.as_event(item, index, batch=batch)
                cls = type(event)
            encoder = encoders.get(cls)
            if encoder is None:
                encoder = encoders[cls] = _checked_encoder(cls)
            try:
                canonical, _, raw_id = encoder(event)
            except InvalidEvent as exc:  # an entity id no backend may store (ADR 0070)
                raise _at(exc, index, batch) from None
            except orjson.JSONEncodeError as exc:  # a plugin's type without our validators
                raise _at(payloads.unencodable(event, exc), index, batch) from None
            if len(canonical) > max_bytes:  # ADR 0075: one length read per event
                raise _at(payloads.too_large(event, len(canonical)), index, batch)
            # tuple.__new__ spares the Python frame of a NamedTuple's own __new__.
            encoded.append(tuple.__new__(Encoded, (event, canonical, raw_id)))
        return encoded

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        transaction: WriteTransaction,
        encoded: list[Encoded],
        expected: dict[str, int] | None,
        batch: bool,
        stage: WriteStage | None = None,
        head: Head | None = None,
        before: Sequence[tuple[Event, int]] = (),
    ) -> CommitResult:
        """Check, stage and write ``encoded`` inside ``transaction``: idempotency, expected
        versions, projections.

        A transaction that :class:`~chanlog.backends.capabilities.AppendsUnlessKnown` is
        written optimistically (ADR 0022): the events are staged as if none were in the
        log yet, and the backend's unique index on event ids is the judge. Only when it
        finds a known id, or when staging refuses (a re-appended event may well fail its
        transition or expected version the second time), are the ids looked up and
        everything staged again, exactly.

        Within a group (:meth:`write_group`), ``stage`` is the group's overlay, ``head``
        the end of what the group wrote so far, and ``before`` the ``(event, offset)`` of
        those records, from which the overlay is rebuilt when a try must be undone.
        """
        # Inline: once per append (a call costs more than the lookup it would make).
        append_unless_known = self._unless_known.get(type(transaction), _UNKNOWN)
        if append_unless_known is _UNKNOWN:
            append_unless_known = self._unless_known_of(transaction)
        if append_unless_known is not None:
            try:
                result = self._stage(transaction, encoded, expected, batch, None, stage, head)
            except (InvalidTransition, ConcurrencyError):
                pass  # decided below, knowing which events are already in the log
            else:
                if append_unless_known(transaction, result.records):
                    return result
            if stage is not None:  # the try left its events in the group's overlay
                stage = self._restaged(before)
        existing = self._find_existing(transaction, encoded)
        if existing is not None and None not in existing:
            return CommitResult([o for o in existing if o is not None], [], [], stage)
        result = self._stage(transaction, encoded, expected, batch, existing, stage, head)
        transaction.append(result.records)  # not empty: some event was not in the log
        return result

    def write_group(
        self, transaction: WriteTransaction, requests: Sequence[AppendRequest]
    ) -> WriteStage:
        """Write several appends in one transaction, in order, each as :meth:`write` would
        on its own: a request the projections or its expected versions refuse gets its
        error (:attr:`AppendRequest.error`) and leaves nothing behind, and the others go
        in. A projection that fails on a request's event (a bug in it: a
        :class:`~chanlog.errors.PluginError`) fails that request alone, in the same way.
        Return the overlay of the ones that went in (their :attr:`AppendRequest.result` is
        set). Any other error (the backend failing) fails the whole group."""
        at_once = self._write_group_at_once(transaction, requests)
        if at_once is not None:
            return at_once
        stage = WriteStage(self._inline)
        head = transaction.head
        start = head.length
        written: list[tuple[Event, int]] = []
        for request in requests:
            try:
                result = self.write(
                    transaction,
                    request.encoded,
                    request.expected,
                    request.batch,
                    stage,
                    head,
                    written,
                )
            except (InvalidTransition, ConcurrencyError, PluginError) as exc:
                request.error = exc
                stage = self._restaged(written)  # its refused events may be in the overlay
                continue
            request.result = result
            if result.stage is not None:
                stage = result.stage
            if result.records:
                last = result.records[-1]
                head = Head(last.offset + 1, last.chain_hash)
                fresh = {offset for offset in result.offsets if offset >= start}
                for item, offset in zip(request.encoded, result.offsets, strict=True):
                    if offset in fresh:
                        fresh.discard(offset)  # an event twice in one batch went in once
                        written.append((item.event, offset))
        return stage

    def _write_group_at_once(
        self, transaction: WriteTransaction, requests: Sequence[AppendRequest]
    ) -> WriteStage | None:
        """The common group in one insert: each append staged after the one before it,
        then all their records handed to the backend at once (the optimistic insert of
        ADR 0022, for the whole group). ``None``, with the transaction as it was, when that
        does not apply or does not go through: a backend without the optimistic insert,
        an append with expected versions (they count what the backend holds), a refusal,
        an id the log or the group already holds. :meth:`write_group` then writes the
        group append by append, exactly."""
        append_unless_known = self._unless_known_of(transaction)
        if append_unless_known is None or any(request.expected for request in requests):
            return None
        stage = WriteStage(self._inline)
        head = transaction.head
        results: list[CommitResult] = []
        records: list[StoredRecord] = []
        for request in requests:
            try:
                result = self._stage(
                    transaction, request.encoded, None, request.batch, None, stage, head
                )
            except (InvalidTransition, ConcurrencyError, PluginError):
                return None
            results.append(result)
            if result.records:
                records.extend(result.records)
                last = result.records[-1]
                head = Head(last.offset + 1, last.chain_hash)
        if records and not append_unless_known(transaction, records):
            return None
        for request, result in zip(requests, results, strict=True):
            request.result = result
        return stage

    def _unless_known_of(self, transaction: WriteTransaction) -> _AppendUnlessKnown | None:
        """The optimistic insert of ``transaction``'s class, or ``None`` when it has none
        (asked once per class and remembered: a protocol check costs microseconds)."""
        kind = type(transaction)
        if kind in self._unless_known:
            return self._unless_known[kind]
        found = type(transaction).append_unless_known if appends_unless_known(transaction) else None
        self._unless_known[kind] = found
        return found

    def _restaged(self, written: Sequence[tuple[Event, int]]) -> WriteStage:
        """A new overlay holding exactly ``written`` (refused tries undone)."""
        stage = WriteStage(self._inline)
        for event, offset in written:
            stage.apply(event, offset)
        return stage

    def _find_existing(
        self, transaction: WriteTransaction, encoded: list[Encoded]
    ) -> list[int | None] | None:
        """Offsets of the events already in the log, or ``None`` when none of them is (the
        common case, which then costs no list at all for a single event)."""
        if len(encoded) == 1:
            found = transaction.find(encoded[0].raw_id)
            return None if found is None else [found]
        raw_ids = [item.raw_id for item in encoded]
        if finds_many(transaction):
            return transaction.find_many(raw_ids)
        return [transaction.find(raw_id) for raw_id in raw_ids]

    @staticmethod
    def _check_versions(transaction: WriteTransaction, expected: dict[str, int]) -> None:
        for stream, version in expected.items():
            actual = transaction.stream_version(stream)
            if actual != version:
                raise ConcurrencyError(
                    f"stream {stream} is at version {actual}, expected {version}",
                    stream=stream,
                    expected=version,
                    actual=actual,
                )

    def _stage(
        self,
        transaction: WriteTransaction,
        encoded: list[Encoded],
        expected: dict[str, int] | None,
        batch: bool,
        existing: list[int | None] | None,
        stage: WriteStage | None,
        head: Head | None,
    ) -> CommitResult:
        """Stage ``encoded`` into ``stage`` (``None``: a new overlay) after ``head``
        (``None``: the transaction's), skipping the events at the offsets ``existing``
        names (``None``: none is in the log): check expected versions, fold the
        projections' stages, chain the new records."""
        if expected:
            self._check_versions(transaction, expected)
        if head is None:
            head = transaction.head
        offsets: list[int] = []
        records: list[StoredRecord] = []
        recorded: list[RecordedEvent] = []
        recording = self.recording
        if stage is None:
            stage = WriteStage(self._inline)
        dumps = self._dumps
        in_batch: dict[bytes, int] = {}
        offset = head.length
        chain = head.chain_hash
        for index, item in enumerate(encoded):
            known = None if existing is None else existing[index]
            if known is None and in_batch:
                known = in_batch.get(item.raw_id)
            if known is not None:
                offsets.append(known)
                continue
            event = item.event
            try:
                stage.apply(event, offset)
            except InvalidTransition as exc:
                raise (exc.at_index(index) if batch else exc) from None
            chain = chain_next(chain, item.raw_id)
            payload = item.canonical if dumps is None else dumps(codec.to_payload(event))
            records.append(
                StoredRecord(offset, item.raw_id, event.event_type, event.streams, payload, chain)
            )
            if recording:
                recorded.append(RecordedEvent(offset, event.event_id, event, "0x" + chain.hex()))
            in_batch[item.raw_id] = offset
            offsets.append(offset)
            offset += 1
        # tuple.__new__ spares the Python frame of a NamedTuple's own __new__.
        return tuple.__new__(CommitResult, (offsets, records, recorded, stage))
