"""Event envelopes in and out of the CLI: JSON / JSONL parsing with line numbers, the export
line format, and the stored records ``log`` and ``export`` select (read as stored, so a
record of a type no installed plugin registers is read too, ADR 0063)."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from chanlog import codec
from chanlog.cli.errors import CliError, ExitCode
from chanlog.copying import export_line
from chanlog.errors import DecodeError, InvalidEvent, InvalidTransition
from chanlog.events.base import Event
from chanlog.records import StoredRecord
from chanlog.store import EventStore

__all__ = [
    "append_numbered",
    "decode_numbered",
    "export_line",
    "newly_appended",
    "parse_json_documents",
    "parse_jsonl",
    "select_stored",
]

Numbered = tuple[str, Any]
"""(where the item came from, e.g. ``"events.jsonl:7"``, the parsed JSON value)."""


def parse_jsonl(stream: IO[bytes], name: str) -> Iterator[Numbered]:
    """Parse one JSON value per non-blank line; a bad line is a :class:`CliError` naming it."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"{where}: malformed JSON: {exc}", ExitCode.INVALID_INPUT) from None
        yield where, value


def parse_json_documents(documents: Sequence[str]) -> list[Numbered]:
    """Parse the ``append`` command's arguments, each one of:

    - ``-``: JSONL on standard input, one envelope per line;
    - JSON text (it starts with ``{`` or ``[``): an envelope or an array of envelopes;
    - anything else: a file holding one JSON document (an envelope or an array of them,
      pretty-printed or not) or JSONL.

    Raises:
        CliError: malformed JSON (naming the argument, file and line), or a file that
            cannot be read.
    """
    items: list[Numbered] = []
    for position, text in enumerate(documents, start=1):
        where = f"argument {position}"
        if text == "-":
            items.extend(parse_jsonl(sys.stdin.buffer, "<stdin>"))
        elif text.lstrip()[:1] in ("{", "["):
            items.extend(_document(where, text))
        else:
            items.extend(_file_documents(where, Path(text)))
    return items


def _document(where: str, text: str | bytes) -> list[Numbered]:
    """One JSON document: an envelope, or an array whose items are numbered."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{where}: malformed JSON: {exc}", ExitCode.INVALID_INPUT) from None
    if isinstance(value, list):
        return [(f"{where}[{index}]", item) for index, item in enumerate(value)]
    return [(where, value)]


def _file_documents(where: str, path: Path) -> list[Numbered]:
    """The envelopes of a file: one JSON document, else JSONL (a file whose first line is a
    whole JSON value on its own); errors name the file, and the line for JSONL."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CliError(
            f"{where}: cannot read {path}: {reason} (an argument is JSON text starting with "
            "'{' or '[', a file of envelopes, or '-' for standard input)",
            ExitCode.USAGE,
        ) from None
    name = str(path)
    try:
        return _document(name, data)
    except CliError:
        first = next((line for line in data.splitlines() if line.strip()), b"")
        if not _is_json(first):
            raise  # not JSONL either: the whole document's error says where it breaks
    return list(parse_jsonl(io.BytesIO(data), name))


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def decode_numbered(store: EventStore, items: Iterable[Numbered]) -> list[tuple[str, Event]]:
    """Decode ``{"type", "payload"}`` envelopes with the store's event types."""
    types = store.plugins.event_types
    events: list[tuple[str, Event]] = []
    for where, value in items:
        try:
            events.append((where, codec.decode_envelope(value, types)))
        except DecodeError as exc:
            raise CliError(f"{where}: {exc}", ExitCode.INVALID_INPUT) from None
    return events


def append_numbered(store: EventStore, events: Sequence[tuple[str, Event]]) -> list[int]:
    """Append one atomic batch; a refusal names the input line of the event refused."""
    try:
        return store.append_batch([event for _, event in events])
    except (InvalidTransition, InvalidEvent) as exc:
        if exc.index is None or not 0 <= exc.index < len(events):
            raise
        where = events[exc.index][0]
        message = str(exc).removeprefix(f"batch[{exc.index}]: ")
        raise CliError(
            f"refused: {where}: {message} (nothing of this batch was written)",
            ExitCode.INVALID_INPUT,
        ) from exc


def newly_appended(offsets: Sequence[int], before: int) -> list[bool]:
    """For each event of a batch :func:`append_numbered` appended at ``offsets`` to a log
    ``before`` records long, whether the batch appended it: an event the log held is not,
    nor the repetition of an event given earlier in the batch (appended once, at one
    offset)."""
    seen: set[int] = set()
    appended = []
    for offset in offsets:
        appended.append(offset >= before and offset not in seen)
        seen.add(offset)
    return appended


def select_stored(
    store: EventStore,
    *,
    start: int = 0,
    end: int | None = None,
    types: Sequence[str] = (),
    entity: str | None = None,
) -> Iterator[StoredRecord]:
    """Stored records in ``[start, end)`` (``end`` clamped to the length the log has when
    the read starts), of the given types (any when empty), of one entity (read through the
    stream index, not by scanning the log); not decoded, so whatever their type."""
    backend = store.backend
    if entity is not None:
        records: Iterable[StoredRecord] = backend.read_stream(entity.lower(), start, end)
    else:
        length = len(store)
        records = backend.read(start, length if end is None else min(end, length))
    wanted = frozenset(types)
    for record in records:
        if not wanted or record.event_type in wanted:
            yield record
