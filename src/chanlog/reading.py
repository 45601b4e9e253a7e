"""Reads: stored records decoded into events, from the whole log or one stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson

from chanlog import codec
from chanlog.backends.base import Backend
from chanlog.backends.capabilities import ReadsStreamPayloads
from chanlog.errors import DecodeError, IntegrityError, InvalidArgument, NotFound
from chanlog.events.base import Event
from chanlog.fastdecode import Mismatch, trusted_decoder
from chanlog.plugins.host import PluginHost
from chanlog.records import RecordedEvent, StoredRecord, Witness
from chanlog.serializers import Serializer
from chanlog.verification import VerifyReport, verify_log

__all__ = ["EventDecoder", "LogReader", "check_offset"]


def check_offset(name: str, value: object) -> None:
    """Refuse anything but a non-negative int as an offset or bound."""
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")


def _stream_key(entity_id: object, start: object = 0, end: object = None) -> str:
    """The stream of ``entity_id`` as the backends key it, its bounds checked."""
    if type(entity_id) is not str:
        raise InvalidArgument(f"entity_id must be a string, got {type(entity_id).__name__}")
    check_offset("start", start)
    if end is not None:
        check_offset("end", end)
    return entity_id.lower()


class EventDecoder:
    """Turns stored payloads into events of the types the plugins registered (picking up
    plugins added later)."""

    def __init__(self, host: PluginHost, serializer: Serializer) -> None:
        self.host = host
        self.serializer = serializer
        # Canonical JSON at rest parses with orjson directly; the hot read path skips a call.
        self._loads: Callable[[bytes], Any] = (
            orjson.loads if serializer.canonical else serializer.loads
        )
        self._types = host.event_types
        self._generation = host.generation
        self._fast: dict[str, Callable[[Mapping[str, Any]], Event]] = {}
        self._refresh()

    def _refresh(self) -> None:
        """Take the registry as the plugins have it now, and each type's fast decoder (when
        payloads at rest are canonical JSON; another serializer decodes through event_of)."""
        host = self.host
        self._generation = host.generation
        self._types = host.event_types
        self._fast = {}
        if self._loads is orjson.loads:
            for name, cls in self._types.items():
                fast = trusted_decoder(cls)
                if fast is not None:
                    self._fast[name] = fast

    @property
    def types(self) -> Mapping[str, type[Event]]:
        """Wire name → event class, as the plugins register them now."""
        if self._generation != self.host.generation:
            self._refresh()
        return self._types

    def event_of(self, offset: int, event_type: str, payload: bytes) -> Event:
        """Decode one stored payload (the fast, shape-checked decoder first; the strict one
        when the payload is anything but what the log writes). The event id is left to be
        computed on first use."""
        cls = self.types.get(event_type)
        if cls is None:
            raise DecodeError(
                f"offset {offset}: event type {event_type!r} is not registered (is the "
                "plugin that defines it installed, and not skipped by CHANLOG_DISABLE_PLUGINS "
                "or CHANLOG_LOAD_PLUGINS?)",
                event_type=event_type,
                offset=offset,
            )
        try:
            fields = self._loads(payload)
        except (DecodeError, ValueError) as exc:  # orjson's JSONDecodeError is a ValueError
            raise DecodeError(
                f"offset {offset}: stored payload does not parse: {exc}",
                event_type=event_type,
                offset=offset,
            ) from exc
        fast = trusted_decoder(cls)  # generated once per class, then a dict lookup
        if fast is not None and type(fields) is dict:
            try:
                return fast(fields)
            except Mismatch:
                pass
        return codec.from_payload(cls, fields, offset=offset)

    def committed(self, stored: StoredRecord) -> RecordedEvent:
        """Like :meth:`record`, for a record the log holds and projections will fold: a
        registered type that does not decode is damage, not a missing plugin.

        Raises:
            IntegrityError: naming the offset.
            DecodeError: the event type is not registered (a plugin is missing).
        """
        try:
            return self.record(stored)
        except DecodeError as exc:
            if exc.event_type not in self.types:
                raise
            raise IntegrityError(
                f"offset {stored.offset}: the stored record does not decode ({exc}); "
                "the log was changed outside chanlog",
                offset=stored.offset,
            ) from exc

    def record(self, stored: StoredRecord) -> RecordedEvent:
        """The :class:`RecordedEvent` of a stored record, its event id taken from it."""
        # event_of() inlined for the common case (canonical JSON at rest, a type whose fast
        # decoder takes the payload): every read of the log and every consumer runs this.
        if self._generation != self.host.generation:
            self._refresh()
        fast = self._fast.get(stored.event_type)
        event = None
        if fast is not None:
            try:
                fields = orjson.loads(stored.payload)
                if type(fields) is dict:
                    event = fast(fields)
            except (Mismatch, ValueError):
                pass
        if event is None:
            event = self.event_of(stored.offset, stored.event_type, stored.payload)
        event_id = "0x" + stored.event_id.hex()
        # The id is known: spare the event from re-encoding itself to learn it.
        object.__setattr__(event, "event_id", event_id)
        return RecordedEvent(stored.offset, event_id, event, "0x" + stored.chain_hash.hex())


class LogReader:
    """Streamed, decoded reads of one backend's log. :class:`~chanlog.EventStore` is one;
    so is anything that only needs to read (``chanlog log`` on a damaged file)."""

    def __init__(self, backend: Backend, decoder: EventDecoder) -> None:
        self._backend = backend
        self._decoder = decoder
        self._host = decoder.host
        self._stream_payloads = (
            backend.read_stream_payloads if isinstance(backend, ReadsStreamPayloads) else None
        )

    @property
    def backend(self) -> Backend:
        """The storage backend."""
        return self._backend

    @property
    def serializer(self) -> Serializer:
        """The payload serializer."""
        return self._decoder.serializer

    @property
    def plugins(self) -> PluginHost:
        """The plugin host whose event types decode the log."""
        return self._host

    def __len__(self) -> int:
        return self._backend.head().length

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self.read_from(0)

    def read_from(self, offset: int) -> Iterator[RecordedEvent]:
        """Records from ``offset`` to the end of the log (as long as it is when the iteration
        reaches it), streamed."""
        check_offset("offset", offset)
        return self._read(offset, None)

    def read_range(self, start: int, end: int) -> Iterator[RecordedEvent]:
        """Records with ``start <= offset < end``; ``end`` is clamped to the length, and the
        result is empty when ``start >= len(store)``.

        Raises:
            InvalidArgument: a negative bound, or ``start > end``.
        """
        check_offset("start", start)
        check_offset("end", end)
        if start > end:
            raise InvalidArgument(f"start ({start}) must not exceed end ({end})")
        return self._read(start, end)

    def _read(self, start: int, end: int | None) -> Iterator[RecordedEvent]:
        length = len(self)
        stop = length if end is None else min(end, length)
        record = self._decoder.record
        for stored in self._backend.read(start, stop):
            yield record(stored)

    def read_stream(
        self, entity_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[RecordedEvent]:
        """The records of one entity (objective, channel or message), in offset order,
        optionally limited to offsets ``[start, end)``. Reads only that entity's records."""
        key = _stream_key(entity_id, start, end)
        record = self._decoder.record
        for stored in self._backend.read_stream(key, start, end):
            yield record(stored)

    def stream_version(self, entity_id: str) -> int:
        """How many events the entity's stream holds (what ``expected_version`` compares)."""
        return self._backend.stream_version(_stream_key(entity_id))

    def get(self, event_id: str) -> RecordedEvent:
        """The record with this event id; :class:`NotFound` when absent,
        :class:`InvalidArgument` when ``event_id`` is not 32 bytes in hex."""
        try:
            raw = bytes.fromhex(event_id.removeprefix("0x"))
        except (ValueError, AttributeError):
            raw = b""
        if len(raw) != 32:
            raise InvalidArgument(f"not an event id ('0x' + 64 hex digits): {event_id!r}")
        offset = self._backend.find(raw)
        if offset is None:
            raise NotFound(f"no event with id {event_id}")
        return next(self._read(offset, offset + 1))

    def stream_events(
        self, entity_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, Event]]:
        """Like :meth:`read_stream`, as ``(offset, event)`` pairs: the lean path that
        reconstruction folds over (an event's id is computed only if it is asked for).

        Raises:
            InvalidArgument: as :meth:`read_stream`, before the first pair is asked for.
        """
        return self._stream_events(_stream_key(entity_id, start, end), start, end)

    def _stream_events(self, key: str, start: int, end: int | None) -> Iterator[tuple[int, Event]]:
        event_of = self._decoder.event_of
        lean = self._stream_payloads
        if lean is not None:
            for offset, event_type, payload in lean(key, start, end):
                yield offset, event_of(offset, event_type, payload)
            return
        for stored in self._backend.read_stream(key, start, end):
            yield stored.offset, event_of(stored.offset, stored.event_type, stored.payload)

    def check_integrity(
        self,
        *,
        witnesses: Iterable[Witness] = (),
        progress: Callable[[int, int], Any] | None = None,
    ) -> VerifyReport:
        """Like :meth:`verify`, saying what was checked (see ADR 0024)."""
        return verify_log(self._backend, self._decoder, witnesses=witnesses, progress=progress)

    def verify(
        self,
        progress: Callable[[int, int], Any] | None = None,
        *,
        witnesses: Iterable[Witness] = (),
    ) -> int:
        """Recompute every event id and chain hash, check the stream index and every stored
        snapshot, and hold the log against ``witnesses`` (and any head the backend
        remembered); return the number of records checked.

        Args:
            progress: called as ``progress(done, total)`` every 1,000 records and at the end.
            witnesses: heads the log once had (see :func:`~chanlog.verification.parse_witness`).

        Raises:
            IntegrityError: naming the first offset that fails (a log edited outside
                chanlog, or cut short of what a witness saw).
        """
        return self.check_integrity(witnesses=witnesses, progress=progress).records
