"""``log``: read the log, filtered by type, entity and offset range; ``--follow`` for live."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Sequence

import click
import orjson

from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.output import format_timestamp
from chanlog.cli.records_io import export_line, select_records
from chanlog.records import RecordedEvent

__all__ = ["FLUSH_EVERY", "LogPrinter", "log_command"]

_COLUMNS = ("offset", "type", "timestamp (UTC)", "entity", "event id")
_ID_WIDTH = 13  # "0x1234ab…cdef"
_TIMESTAMP_WIDTH = 24  # "2026-01-01T00:00:00.000Z"
FLUSH_EVERY = 0.1
"""Seconds between flushes of stdout while records stream (and at the first record)."""


def _short_id(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


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
        widths = (len(str(max(last_offset, 0))), max(map(len, type_names), default=4))
        self._widths = (max(widths[0], len(_COLUMNS[0])), max(widths[1], len(_COLUMNS[1])))
        self._last_flush = 0.0
        self._out = sys.stdout

    def header(self) -> None:
        """The column names (table mode only)."""
        if not self.json_mode:
            self._write(self._format(_COLUMNS))

    def record(self, record: RecordedEvent) -> None:
        """Print one record."""
        if self.json_mode:
            self._write(orjson.dumps(export_line(record)).decode())
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

    def flush(self) -> None:
        """Flush what is printed so far."""
        self._out.flush()
        self._last_flush = time.monotonic()

    def _format(self, cells: Sequence[str]) -> str:
        offset, kind = self._widths
        return (
            f"{cells[0]:>{offset}}  {cells[1]:<{kind}}  {cells[2]:<{_TIMESTAMP_WIDTH}}  "
            f"{cells[3]:<{_ID_WIDTH}}  {cells[4]}"
        )

    def _write(self, line: str) -> None:
        self._out.write(line + "\n")
        if not self.printed or time.monotonic() - self._last_flush >= FLUSH_EVERY:
            self.flush()


@click.command("log")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
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

    With --json, one export envelope per line (JSONL).
    """
    if end is not None and start > end:
        raise CliError(f"--from ({start}) must not exceed --to ({end})", ExitCode.USAGE)
    if follow and (end is not None or limit is not None):
        raise CliError("--follow cannot be combined with --to or --limit", ExitCode.USAGE)
    # Read-only: a misspelled log is an error, not a new empty log. No projections: an
    # operator looking at a damaged log must see records that no longer fold.
    store = state.open_store(read_only=True, projections=[])
    known = store.plugins.event_types
    for name in types:
        if name not in known:
            raise CliError(
                f"--type {name!r}: no such event type (known: {', '.join(sorted(known))})",
                ExitCode.USAGE,
            )
    if follow:
        _follow(state, types, entity, start)
        return
    last = (len(store) if end is None else min(end, len(store))) - 1
    printer = LogPrinter(json_mode=state.output.json_mode, type_names=known, last_offset=last)
    for record in select_records(store, start=start, end=end, types=types, entity=entity):
        if not printer.printed:
            printer.header()
        printer.record(record)
        if limit is not None and printer.printed >= limit:
            break
    printer.flush()
    if printer.printed == 0:
        state.output.note("no events match")


def _wait_until_interrupted() -> None:
    """Block the main thread while the subscription prints; Ctrl-C ends it."""
    threading.Event().wait()


def _follow(state: CliContext, types: Sequence[str], entity: str | None, start: int) -> None:
    """Catch up from ``start``, then print live records until interrupted."""
    store = state.open_store(read_only=True, projections=[])
    wanted = frozenset(types)
    entity_id = entity.lower() if entity is not None else None
    printer = LogPrinter(
        json_mode=state.output.json_mode,
        type_names=store.plugins.event_types,
        last_offset=10 * len(store) + 999_999,  # room for the log to grow while followed
    )
    printer.header()

    def deliver(record: RecordedEvent) -> None:
        if wanted and record.event_type not in wanted:
            return
        if entity_id is not None and entity_id not in record.event.streams:
            return
        printer.record(record)
        printer.flush()  # a followed log is read as it happens

    subscription = store.subscribe(deliver, from_offset=start, name="chanlog log --follow")
    try:
        _wait_until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        subscription.close()
