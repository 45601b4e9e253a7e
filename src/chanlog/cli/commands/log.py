"""``log``: read the log, filtered by type, entity and offset range; ``--follow`` for live."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import click
import orjson

from chanlog.backends.base import Backend
from chanlog.cli.app import CliContext, json_option, pass_cli, standard_output
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.output import format_timestamp, printable
from chanlog.cli.records_io import select_stored
from chanlog.copying import canonical_payload, export_line, export_line_of
from chanlog.folded_chain import chain_hash_at
from chanlog.records import Head, RecordedEvent, StoredRecord
from chanlog.store import EventStore

__all__ = ["FLUSH_EVERY", "UNREGISTERED", "LogPrinter", "log_command"]

_COLUMNS = ("offset", "type", "timestamp (UTC)", "entity", "event id")
_ID_WIDTH = 13  # "0x1234ab…cdef"
_TIMESTAMP_WIDTH = 24  # "2026-01-01T00:00:00.000Z"
FLUSH_EVERY = 0.1
"""Seconds between flushes of stdout while records stream (and at the first record)."""
UNREGISTERED = "unregistered type, stored payload:"
"""What follows the event id in the row of a record whose type no installed plugin
registers (ADR 0063); with ``--json`` its line has ``"unregistered": true``."""
_FOLLOW_PAUSE = 1.0
"""Seconds a follow waits for appends before it looks at the log again (a log that lost
records, never growing past what was read, is noticed then)."""


def _short_id(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


def _timestamp_of(payload: bytes) -> str:
    """The timestamp cell of a payload no class decodes: its ``timestamp_ms``, or ``-``."""
    value = orjson.loads(payload).get("timestamp_ms")
    return format_timestamp(value) if type(value) is int else "-"


class LogPrinter:
    """Prints records as they are read, one line each, and keeps nothing: a table of fixed
    column widths (known before the first record, so no row waits for the widest) or, with
    ``--json``, one export line per record. Output is flushed at the first record and then
    every :data:`FLUSH_EVERY` seconds, so the first line shows at once and a slow, sparse
    read (``--type``, ``--entity``) still shows each record as it comes.

    Args:
        json_mode: print export lines instead of table rows.
        type_names: every event type the log may hold (sizes the type column).
        last_offset: the greatest offset that may be printed (sizes the offset column).
    """

    def __init__(self, *, json_mode: bool, type_names: Iterable[str], last_offset: int) -> None:
        self.json_mode = json_mode
        self.printed = 0
        self.unregistered_types: Counter[str] = Counter()
        """How many records of each type no installed plugin registers were printed."""
        widths = (len(str(max(last_offset, 0))), max(map(len, type_names), default=4))
        self._widths = (max(widths[0], len(_COLUMNS[0])), max(widths[1], len(_COLUMNS[1])))
        self._last_flush = 0.0
        self._out = standard_output()

    def header(self) -> None:
        """The column names (table mode only)."""
        if not self.json_mode:
            self._write(self._format(_COLUMNS))

    def record(self, record: RecordedEvent, line: bytes | None = None) -> None:
        """Print one record; ``line`` is its export line when at hand (written from the
        stored record, as ``export`` writes it)."""
        if self.json_mode:
            self._write((orjson.dumps(export_line(record)) if line is None else line).decode())
        else:
            streams = record.event.streams
            self._write(
                self._format(
                    (
                        str(record.offset),
                        record.event_type,
                        format_timestamp(record.timestamp_ms),
                        _short_id(streams[0]) if streams else "-",
                        _short_id(record.event_id),
                    )
                )
            )
        self.printed += 1

    def unregistered(self, stored: StoredRecord, payload: bytes) -> None:
        """Print a record of a type no installed plugin registers, as stored: ``payload``
        is its canonical JSON (:func:`~chanlog.copying.canonical_payload`), shown whole."""
        if self.json_mode:
            self._write(export_line_of(stored, payload, {"unregistered": True}).decode())
        else:
            streams = stored.streams
            cells = (
                str(stored.offset),
                stored.event_type,
                _timestamp_of(payload),
                _short_id(streams[0]) if streams else "-",
                _short_id("0x" + stored.event_id.hex()),
            )
            self._write(f"{self._format(cells)}  {UNREGISTERED} {printable(payload.decode())}")
        self.printed += 1
        self.unregistered_types[stored.event_type] += 1

    def flush(self) -> None:
        """Flush what is printed so far."""
        self._out.flush()
        self._last_flush = time.monotonic()

    def _format(self, cells: Sequence[str]) -> str:
        offset, kind = self._widths
        # An entity id of a plugin's type is free text: printed, not obeyed (printable).
        return (
            f"{cells[0]:>{offset}}  {cells[1]:<{kind}}  {cells[2]:<{_TIMESTAMP_WIDTH}}  "
            f"{printable(cells[3]):<{_ID_WIDTH}}  {cells[4]}"
        )

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        if not self.printed or time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self.flush()


@click.command("log")
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only events of this type (repeatable); a type no installed plugin registers "
    "is listed as stored.",
)
@click.option("--entity", help="Only events of this objective, channel or message id.")
@click.option("--from", "start", type=click.IntRange(min=0), default=0, help="First offset.")
@click.option("--to", "end", type=click.IntRange(min=0), help="Stop before this offset.")
@click.option("--limit", type=click.IntRange(min=1), help="Print at most this many events.")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing events as they are appended (Ctrl-C)."
)
@json_option
@pass_cli
def log_command(
    state: CliContext,
    types: Sequence[str],
    entity: str | None,
    start: int,
    end: int | None,
    limit: int | None,
    follow: bool,
) -> None:
    """Print the log: offset, type, timestamp, entity and event id of each event.

    With --json, one export envelope per line (JSONL), as 'chanlog export' writes it. A
    record of a type no installed plugin registers is listed too, marked, with its stored
    payload (with --json, its line has "unregistered": true).
    """
    if end is not None and start > end:
        raise CliError(f"--from ({start}) must not exceed --to ({end})", ExitCode.USAGE)
    if follow and (end is not None or limit is not None):
        raise CliError("--follow cannot be combined with --to or --limit", ExitCode.USAGE)
    if entity is not None and ("\u2026" in entity or "..." in entity):
        # Copied from the table, it would match nothing and look like an entity with no events.
        raise CliError(
            f"--entity {entity!r} is abbreviated, as the log's table shows ids: give the whole "
            "id ('chanlog log --json' prints it)",
            ExitCode.USAGE,
        )
    # Read-only: a misspelled log is an error, not a new empty log. No projections: an
    # operator looking at a damaged log must see records that no longer fold.
    store = state.open_store(read_only=True, projections=[])
    if follow:
        _follow(state, store, types, entity, start)
        return
    known = store.plugins.event_types
    last = (len(store) if end is None else min(end, len(store))) - 1
    printer = LogPrinter(json_mode=state.output.json_mode, type_names=known, last_offset=last)
    emit = _stored_printer(printer, store)
    whole = True
    for stored in select_stored(store, start=start, end=end, types=types, entity=entity):
        if not printer.printed:
            printer.header()
        emit(stored)
        if limit is not None and printer.printed >= limit:
            whole = False
            break
    printer.flush()
    _note_unregistered(state, printer, set())
    if whole:
        _refuse_unknown_types(types, known, printer)
    if printer.printed == 0:
        state.output.note("no events match")


def _stored_printer(printer: LogPrinter, store: EventStore) -> Callable[[StoredRecord], None]:
    """What prints a record as read from the backend: decoded when its type is registered
    (a registered record that no longer decodes is refused, as by any read), else as
    stored, marked (ADR 0063)."""
    known = store.plugins.event_types
    serializer = store.serializer
    decode = store.decode
    json_mode = printer.json_mode

    def emit(stored: StoredRecord) -> None:
        if stored.event_type not in known:
            printer.unregistered(stored, canonical_payload(stored, serializer))
        elif json_mode:
            line = export_line_of(stored, canonical_payload(stored, serializer))
            printer.record(decode(stored), line)
        else:
            printer.record(decode(stored))

    return emit


def _note_unregistered(state: CliContext, printer: LogPrinter, noted: set[str]) -> None:
    """Say, for people, which types were shown as stored, and why (each type once:
    ``noted`` holds those already named, and gains the ones named now)."""
    seen = {name: count for name, count in printer.unregistered_types.items() if name not in noted}
    if seen:
        names = ", ".join(f"{name} ({count})" for name, count in sorted(seen.items()))
        state.output.note(
            f"records of types no installed plugin registers, shown as stored: {names}; "
            "install the plugin that defines them (and do not skip it with "
            "CHANLOG_DISABLE_PLUGINS or CHANLOG_LOAD_PLUGINS) to decode them"
        )
        noted.update(seen)


def _refuse_unknown_types(
    types: Sequence[str], known: Mapping[str, object], printer: LogPrinter
) -> None:
    """A ``--type`` that no installed plugin registers is a typo unless the read found
    records stored under it (those of an uninstalled plugin's type, ADR 0063)."""
    for name in types:
        if name not in known and not printer.unregistered_types[name]:
            raise CliError(
                f"--type {name!r}: no such event type: no installed plugin registers it and "
                f"no record read is of it (known: {', '.join(sorted(known))})",
                ExitCode.USAGE,
            )


def _wait_for_appends(backend: Backend, length: int) -> None:
    """Block until the log may have changed: it grew past ``length``, or a pause passed
    (a log that lost records never grows past it). Ctrl-C ends the wait."""
    backend.wait(length, _FOLLOW_PAUSE)


def _follow(
    state: CliContext,
    store: EventStore,
    types: Sequence[str],
    entity: str | None,
    start: int,
) -> None:
    """Print the records from ``start`` to the end of the log, then each record appended
    after them, until interrupted. Every record is read as stored, as without --follow, so
    that one of a type no installed plugin registers is printed, marked, and does not stop
    the records after it (a subscription delivers decoded records)."""
    known = store.plugins.event_types
    printer = LogPrinter(
        json_mode=state.output.json_mode,
        type_names=known,
        last_offset=10 * len(store) + 999_999,  # room for the log to grow while followed
    )
    printer.header()
    emit = _stored_printer(printer, store)
    backend = store.backend
    noted: set[str] = set()
    position, seen, judged = start, None, False
    try:
        while True:
            head = backend.head()
            if seen is not None and (
                head.length < position or _hash_before(backend, head, position) != seen
            ):
                position = _note_lost(state, head.length, position)
            if head.length > position:
                for stored in select_stored(
                    store, start=position, end=head.length, types=types, entity=entity
                ):
                    emit(stored)
                printer.flush()  # a followed log is read as it happens
            if head.length >= position:
                position, seen = head.length, head.chain_hash if head.length else None
            _note_unregistered(state, printer, noted)
            if not judged:  # on what the log held when the follow began
                _refuse_unknown_types(types, known, printer)
                judged = True
            _wait_for_appends(backend, position)
    except KeyboardInterrupt:
        pass


def _hash_before(backend: Backend, head: Head, position: int) -> bytes | None:
    """The chain hash of the record at ``position - 1``: the head's, without a read, while
    the log has not grown past it."""
    return head.chain_hash if head.length == position else chain_hash_at(backend, position - 1)


def _note_lost(state: CliContext, length: int, position: int) -> int:
    """Say that the log no longer holds the records printed last, and return where the
    follow goes on: at the log's end when it is shorter, else where it was."""
    if length < position:
        state.output.note(
            f"the log now holds {length} records, fewer than the {position} already read: "
            'it lost records (a crash with durability "normal", a failover to a replica '
            "behind it, a backup restored); following from offset "
            f"{length}, where records written in their place will show"
        )
        return length
    state.output.note(
        f"the log's record at offset {position - 1} is not the one read there any more: it "
        "lost records and others took their offsets; following on from offset "
        f"{position}; run `chanlog verify`"
    )
    return position
