"""``log``: read the log, filtered by type, entity and offset range; ``--follow`` for live."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import click

from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.output import Output, format_timestamp
from chanlog.cli.records_io import export_line, select_records
from chanlog.records import RecordedEvent

__all__ = ["log_command"]

_COLUMNS = ("offset", "type", "timestamp (UTC)", "entity", "event id")


def _row(record: RecordedEvent) -> tuple[str, ...]:
    streams = record.event.streams
    return (
        str(record.offset),
        record.event_type,
        format_timestamp(record.timestamp_ms),
        _short_id(streams[0]) if streams else "-",
        _short_id(record.event_id),
    )


def _short_id(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:8]}…{value[-4:]}"


def _emit_line(output: Output, record: RecordedEvent) -> None:
    if output.json_mode:
        output.json_line(export_line(record))
    else:
        output.line("  ".join(_row(record)))


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
    output = state.output
    if follow:
        _follow(state, types, entity, start)
        return
    rows: list[tuple[str, ...]] = []
    printed = 0
    for record in select_records(store, start=start, end=end, types=types, entity=entity):
        if output.json_mode:
            output.json_line(export_line(record))
        else:
            rows.append(_row(record))
        printed += 1
        if limit is not None and printed >= limit:
            break
    if printed == 0:
        output.note("no events match")
    elif not output.json_mode:
        output.table(None, _COLUMNS, rows)


def _wait_until_interrupted() -> None:
    """Block the main thread while the subscription prints; Ctrl-C ends it."""
    threading.Event().wait()


def _follow(state: CliContext, types: Sequence[str], entity: str | None, start: int) -> None:
    """Catch up from ``start``, then print live records until interrupted."""
    store = state.open_store(read_only=True, projections=[])
    wanted = frozenset(types)
    entity_id = entity.lower() if entity is not None else None
    output = state.output

    def deliver(record: RecordedEvent) -> None:
        if wanted and record.event_type not in wanted:
            return
        if entity_id is not None and entity_id not in record.event.streams:
            return
        _emit_line(output, record)

    subscription = store.subscribe(deliver, from_offset=start, name="chanlog log --follow")
    try:
        _wait_until_interrupted()
    except KeyboardInterrupt:
        pass
    finally:
        subscription.close()
