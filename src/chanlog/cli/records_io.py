"""Event envelopes in and out of the CLI: JSON / JSONL parsing with line numbers, the export
line format, and record selection shared by ``log`` and ``export``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import orjson

from chanlog import codec
from chanlog.cli.errors import CliError, ExitCode
from chanlog.errors import DecodeError, InvalidEvent, InvalidTransition
from chanlog.events.base import Event
from chanlog.records import RecordedEvent
from chanlog.store import EventStore

__all__ = [
    "append_numbered",
    "decode_numbered",
    "export_line",
    "parse_json_documents",
    "parse_jsonl",
    "select_records",
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
    """Parse command-line JSON arguments; each is an envelope or an array of envelopes."""
    items: list[Numbered] = []
    for position, text in enumerate(documents, start=1):
        where = f"argument {position}"
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise CliError(f"{where}: malformed JSON: {exc}", ExitCode.INVALID_INPUT) from None
        if isinstance(value, list):
            items.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
        else:
            items.append((where, value))
    return items


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


def export_line(record: RecordedEvent) -> dict[str, Any]:
    """The export format: the import envelope plus where the event sits in the log."""
    return {
        "offset": record.offset,
        "event_id": record.event_id,
        "type": record.event_type,
        "payload": codec.to_payload(record.event),
        "chain_hash": record.chain_hash,
    }


def select_records(
    store: EventStore,
    *,
    start: int = 0,
    end: int | None = None,
    types: Sequence[str] = (),
    entity: str | None = None,
) -> Iterator[RecordedEvent]:
    """Records in ``[start, end)``, of the given types (any when empty), of one entity (read
    through the stream index, not by scanning the log)."""
    if entity is not None:
        records: Iterable[RecordedEvent] = store.read_stream(entity, start, end)
    elif end is None:
        records = store.read_from(start)
    else:
        records = store.read_range(start, end)
    wanted = frozenset(types)
    for record in records:
        if not wanted or record.event_type in wanted:
            yield record
