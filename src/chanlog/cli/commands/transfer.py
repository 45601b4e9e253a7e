"""``append``, ``import`` and ``export``: events in and out as JSON envelopes."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path
from typing import IO

import click

from chanlog.backends.files import fsync_directory
from chanlog.backends.sqlite_schema import log_files
from chanlog.cli.app import CliContext, json_option, pass_cli, standard_output
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.partial_files import partial_file
from chanlog.cli.records_io import (
    append_numbered,
    decode_numbered,
    newly_appended,
    parse_json_documents,
    parse_jsonl,
    select_stored,
)
from chanlog.copying import (
    LogCopy,
    canonical_payload,
    export_line_of,
    is_export_line,
    parse_export_line,
)
from chanlog.errors import DecodeError
from chanlog.store import EventStore

__all__ = ["append_command", "export_command", "import_command"]

DEFAULT_BATCH_SIZE = 10_000


@click.command("append")
@click.argument("documents", nargs=-1, required=True, metavar="EVENTS...")
@json_option
@pass_cli
def append_command(state: CliContext, documents: tuple[str, ...]) -> None:
    """Append events given as JSON envelopes, atomically.

    Each of EVENTS is a file (event.json: one envelope {"type": "...", "payload": {...}},
    a JSON array of them, or JSONL), JSON text starting with '{' or '[', or "-" to read
    JSONL from stdin. All of them are one batch: every event is appended, or none is.
    """
    items = parse_json_documents(documents)
    if not items:
        raise CliError("nothing to append", ExitCode.USAGE)
    store = state.open_store()
    events = decode_numbered(store, items)
    before = len(store)
    offsets = append_numbered(store, events)
    appended = newly_appended(offsets, before)
    new = sum(appended)
    output = state.output
    if output.json_mode:
        output.json({"offsets": offsets, "appended": new, "already_present": len(offsets) - new})
        return
    output.table(
        None,
        ("offset", "type", "status", "event id"),
        [
            (offset, event.event_type, "new" if is_new else "present", event.event_id)
            for offset, is_new, (_, event) in zip(offsets, appended, events, strict=True)
        ],
    )


@click.command("import")
@click.argument("source", type=click.File("rb"))
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Events per atomic batch.",
)
@json_option
@pass_cli
def import_command(state: CliContext, source: IO[bytes], batch_size: int) -> None:
    """Import events from a JSONL file ("-" for stdin), one envelope per line.

    Lines written by 'chanlog export' (they carry offset, event_id and chain_hash) are
    copied exactly: every record at its exported offset with its exported chain hash, into
    an empty log or one holding the beginning of the export, whatever the snapshot policy
    (the export's own snapshot-created events come along). A file whose first line is a
    plain {"type", "payload"} envelope is appended as new events, skipping those already in
    the log; an export line in it is refused.

    Each batch of --batch-size lines is atomic. On a bad line or a refused event nothing of
    its batch is written, the error names the line, and earlier batches stay committed;
    re-running the import is safe.
    """
    store = state.open_store()
    name = getattr(source, "name", "<input>")
    name = "<stdin>" if name in ("-", "<stdin>") else str(name)
    total = _count_lines(source)
    lines = parse_jsonl(source, name)
    first = next(lines, None)
    items = itertools.chain([] if first is None else [first], lines)
    copy = LogCopy(store) if first is not None and is_export_line(first[1]) else None
    read = appended = 0
    with state.output.progress("import", total) as update:
        while batch := list(itertools.islice(items, batch_size)):
            if copy is not None:
                types = store.plugins.event_types
                copy.add([parse_export_line(value, types, where) for where, value in batch])
                appended = copy.appended
            else:
                _refuse_export_lines(batch)
                # Counted per batch: a snapshot policy may append snapshot-created in between.
                before = len(store)
                offsets = append_numbered(store, decode_numbered(store, batch))
                appended += sum(newly_appended(offsets, before))
            read += len(batch)
            update(read)
    result = {
        "read": read,
        "appended": appended,
        "already_present": read - appended,
        "exact_copy": copy is not None,
        "snapshots_rebuilt": 0 if copy is None else copy.snapshots,
    }
    if state.output.json_mode:
        state.output.json(result)
        return
    how = "copied at their exported offsets" if copy is not None else "appended"
    state.output.line(
        f"imported {read} events from {name}: {appended} {how}, {read - appended} already "
        f"present; log length {len(store)}"
    )


def _refuse_export_lines(batch: list[tuple[str, object]]) -> None:
    """Refuse an export line among envelopes: appended as a new event, it would lose the
    offset and chain hash it says it has (the first line decides what a file is)."""
    for where, value in batch:
        if is_export_line(value):
            raise DecodeError(
                f"{where}: an export line (it has an offset), though the lines before it are "
                "not: an export is imported alone, as an exact copy; to append its events as "
                'new ones, remove "offset" from every line (nothing of this batch was written)',
                path="offset",
            )


def _count_lines(source: IO[bytes]) -> int | None:
    """Lines in a seekable file (for the progress bar's total); ``None`` for a pipe."""
    try:
        if not source.seekable():
            return None
        position = source.tell()
        count = sum(1 for line in source if line.strip())
        source.seek(position)
        return count
    except OSError:
        return None


@click.command("export")
@click.argument("destination", type=click.Path(path_type=Path, dir_okay=False), default="-")
@click.option("--from", "start", type=click.IntRange(min=0), default=0, help="First offset.")
@click.option("--to", "end", type=click.IntRange(min=0), help="Stop before this offset.")
@pass_cli
def export_command(state: CliContext, destination: Path, start: int, end: int | None) -> None:
    """Export the log as JSONL ("-" for stdout): one envelope per line with its offset,
    event_id and chain_hash, re-importable with 'chanlog import'.

    Writes each record as stored, without decoding or folding it: a log whose records no
    longer fold still exports, and so do records of a type no installed plugin registers
    (the same lines as with the plugin). A file is written whole or not at all (through a
    symbolic link, which stays), and never over the log's own file or one of its side
    files; a pipe or a device (/dev/stdout) is written into, as standard output is."""
    if not destination.name:  # "" (click makes it ".", which it does not check)
        raise CliError(
            "the export's DESTINATION is empty: give a file name, or '-' for standard output",
            ExitCode.USAGE,
        )
    store = state.open_store(read_only=True, projections=[])
    if str(destination) != "-":
        _refuse_a_file_of_the_log(store, destination)
    stop = len(store) if end is None else min(end, len(store))
    if start > stop and end is not None:
        raise CliError(f"--from ({start}) must not exceed --to ({end})", ExitCode.USAGE)
    total = max(stop - start, 0)
    if str(destination) == "-":
        out = standard_output().buffer
        _export(state, store, out, start, stop, total)
        out.flush()
        return
    target = _renamed_over(destination)
    try:
        if target is None:
            with destination.open("wb") as handle:
                written = _export(state, store, handle, start, stop, total)
        else:
            written = _export_whole(state, store, target, start, stop, total)
    except BrokenPipeError:
        raise  # its reader is gone (>(head -1)): as for standard output, not an error
    except OSError as exc:
        whole = "" if target is None else " (nothing was written there)"
        raise CliError(
            f"{destination}: cannot write the export: {exc.strerror or exc}{whole}",
            ExitCode.STORAGE,
        ) from exc
    state.output.note(f"exported {written} events to {destination}")


def _renamed_over(destination: Path) -> Path | None:
    """The file an export to ``destination`` is renamed over: ``destination``, or the file
    a symbolic link names (the link stays); ``None`` for a pipe, a terminal or a device
    (``/dev/stdout``, a shell's ``>(gzip > x.gz)``), written into as standard output is: a
    file renamed over it would take its place."""
    try:
        mode = destination.stat().st_mode
    except OSError:
        return destination  # missing: the export creates it, or says what is wrong
    if not stat.S_ISREG(mode):
        return None
    return Path(os.path.realpath(destination)) if destination.is_symlink() else destination


def _export_whole(
    state: CliContext, store: EventStore, destination: Path, start: int, stop: int, total: int
) -> int:
    """Export to the file ``destination``, which appears only complete and durable: written
    beside it, synced, then renamed over it; on any failure the partial file is removed.
    The partial file's name is its own: two exports to one destination at once (a backup
    job overlapping the last run) would otherwise write into one file, and rename a mix of
    both."""
    with partial_file(destination) as (partial, handle):
        written = _export(state, store, handle, start, stop, total)
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(partial, destination)
    fsync_directory(destination.parent)
    return written


def _refuse_a_file_of_the_log(store: EventStore, destination: Path) -> None:
    """Refuse to rename an export over the log it reads, or over one of its side files
    (``chanlog export node.db`` for ``node.jsonl``): the log would be gone."""
    log = getattr(store.backend, "path", None)
    if not isinstance(log, str | os.PathLike):
        return  # a backend that keeps no file
    if Path(os.path.realpath(destination)) in log_files(log):
        raise CliError(
            f"{destination} is a file of the log being exported ({log}): export to a file of "
            "its own (nothing was written)",
            ExitCode.USAGE,
        )


def _export(
    state: CliContext, store: EventStore, handle: IO[bytes], start: int, stop: int, total: int
) -> int:
    """Write the records from ``start`` to ``stop`` to ``handle`` as export lines; return
    how many."""
    written = 0
    serializer = store.serializer
    with state.output.progress("export", total) as update:
        for record in select_stored(store, start=start, end=stop):
            handle.write(export_line_of(record, canonical_payload(record, serializer)) + b"\n")
            written += 1
            if written % 1000 == 0:
                update(written)
    return written
