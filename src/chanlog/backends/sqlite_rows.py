"""SQLite rows to chanlog values and back: ``events`` rows to
:class:`~chanlog.records.StoredRecord` (and the other way), the last row to a
:class:`~chanlog.records.Head`, ``snapshots`` rows to :class:`~chanlog.records.StoredSnapshot`.

A flipped byte in a database file can turn a blob into an int or text, or leave JSON that
does not parse. Decoding checks the types chanlog writes, so such a row is an error at its
offset (:class:`~chanlog.errors.IntegrityError` for a record,
:class:`~chanlog.errors.StorageError` for the bookkeeping) rather than a value that fails
later, far from the damage. The checks are type identities only: they run once per record
read, and cost about a tenth of the backend's read of a record; a changed byte inside a
value of the right type is what ``verify()`` finds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from chanlog.errors import ChanlogError, IntegrityError, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredRecord, StoredSnapshot

__all__ = [
    "EventRow",
    "damaged_record",
    "event_rows",
    "head_of",
    "in_stream",
    "index_pair_of",
    "more_streams",
    "payload_of",
    "record_of",
    "short",
    "snapshot_of",
    "snapshot_row",
    "streams_of",
]

EventRow = tuple[int, bytes, str, str, bytes, bytes, "str | None"]
"""An ``events`` row as chanlog writes it: position, event_id, event_type, streams (JSON of
the streams after the first, or ''), payload, chain_hash, stream (the first, or NULL)."""

_COLUMN_TYPES = (
    ("position", int),
    ("event_id", bytes),
    ("event_type", str),
    ("streams", str),
    ("payload", bytes),
    ("chain_hash", bytes),
    ("stream", str),
)


def short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def damaged_record(position: int, problem: str) -> IntegrityError:
    """The error for the record at ``position``, damaged as ``problem`` says."""
    return IntegrityError(
        f"offset {position}: damaged record: {problem}; the record was changed outside chanlog",
        offset=position,
    )


# -- events rows ----------------------------------------------------------------------------


def record_of(row: tuple[Any, ...]) -> StoredRecord:
    """The record of an ``events`` row (columns in :data:`EventRow` order).

    Raises:
        IntegrityError: a column does not have the type chanlog writes, or the streams do
            not parse; at the row's offset.
        StorageError: the row's position itself is not an integer.
    """
    position, event_id, event_type, more, payload, chain_hash, first = row
    if (
        type(event_id) is not bytes
        or type(chain_hash) is not bytes
        or type(payload) is not bytes
        or type(event_type) is not str
        or type(more) is not str
        or type(position) is not int
    ):
        raise _damaged_row(row)
    if first is None:  # no streams, or a row of schema version 1 (all of them in ``more``)
        streams: tuple[str, ...] = tuple(more_streams(position, more)) if more else ()
    elif type(first) is not str:
        raise _damaged_row(row)
    elif more:
        streams = (first, *more_streams(position, more))
    else:
        streams = (first,)
    return StoredRecord(position, event_id, event_type, streams, payload, chain_hash)


def payload_of(row: tuple[Any, ...]) -> tuple[int, str, bytes]:
    """``(offset, event_type, payload)`` of a row starting ``position, event_type,
    payload`` (later columns are ignored), with the same type checks as :func:`record_of`."""
    position = row[0]
    event_type = row[1]
    payload = row[2]
    if type(position) is int and type(event_type) is str and type(payload) is bytes:
        return position, event_type, payload
    if type(position) is not int:
        raise _bad_position(position)
    if type(event_type) is not str:
        raise damaged_record(position, f"its event_type is {type(event_type).__name__}, not str")
    raise damaged_record(position, f"its payload is {type(payload).__name__}, not bytes")


def more_streams(position: int, more: str) -> list[str]:
    """The streams listed in a row's ``streams`` column (a JSON list of strings).

    Raises:
        IntegrityError: the column does not parse as a list of strings.
    """
    try:
        streams = orjson.loads(more)
    except orjson.JSONDecodeError as exc:
        raise damaged_record(position, f"its streams do not parse ({exc})") from exc
    if type(streams) is not list:
        raise damaged_record(position, f"its streams are not a list: {short(more)}")
    for stream in streams:
        if type(stream) is not str:
            raise damaged_record(position, f"its streams are not all strings: {short(more)}")
    return streams


def streams_of(position: int, first: object, more: object) -> Iterator[str]:
    """The distinct streams of a row from its ``stream`` and ``streams`` columns, in order
    (what :func:`record_of` puts in ``streams``, each once).

    Raises:
        IntegrityError: a column has the wrong type or the streams do not parse.
    """
    if first is not None and type(first) is not str:
        raise damaged_record(position, f"its stream is {type(first).__name__}, not str")
    if type(more) is not str:
        raise damaged_record(position, f"its streams is {type(more).__name__}, not str")
    streams = [] if first is None else [first]
    if more:
        streams += more_streams(position, more)
    return iter(dict.fromkeys(streams))


def index_pair_of(row: tuple[Any, ...]) -> tuple[str, int]:
    """The ``(stream, position)`` of a ``streams`` index row.

    Raises:
        IntegrityError: the stream is not text (at the row's position).
        StorageError: the position is not an integer.
    """
    stream, position = row
    if type(stream) is str and type(position) is int:
        return stream, position
    if type(position) is not int:
        raise StorageError(
            f"damaged chanlog database: a stream index row has position {short(position)}, "
            "not an integer (the file was changed outside chanlog)"
        )
    raise IntegrityError(
        f"offset {position}: damaged stream index row (its stream is "
        f"{type(stream).__name__}, not str); the index was changed outside chanlog",
        offset=position,
    )


def in_stream(stream: str, first: str | None, more: str) -> bool:
    """Whether a row with these stream columns belongs to ``stream``.

    A row whose ``streams`` column is damaged (not a JSON list) may belong to any stream:
    it counts as a candidate, so a read hands it to :func:`record_of`, which names its
    offset in the :class:`~chanlog.errors.IntegrityError`.
    """
    if first == stream:
        return True
    if not more:
        return False
    try:
        streams = orjson.loads(more)
    except (orjson.JSONDecodeError, TypeError):
        return True
    return type(streams) is not list or stream in streams


def event_rows(records: Sequence[StoredRecord], next_offset: int, path: Path) -> list[EventRow]:
    """The ``events`` rows of ``records``, which must continue the log at ``next_offset``.

    Raises:
        StorageError: a record's offset does not continue the log (a bug in the caller).
    """
    rows: list[EventRow] = []
    dumps = orjson.dumps
    for record in records:
        offset = record.offset
        if offset != next_offset:
            raise StorageError(
                f"{path}: record offset {offset} does not continue the log (next offset is "
                f"{next_offset})"
            )
        next_offset += 1
        streams = record.streams
        if len(streams) == 1:
            first: str | None = streams[0]
            more = ""
        elif streams:
            first = streams[0]
            more = dumps(streams[1:]).decode()
        else:
            first = None
            more = ""
        rows.append(
            (
                offset,
                record.event_id,
                record.event_type,
                more,
                record.payload,
                record.chain_hash,
                first,
            )
        )
    return rows


def _damaged_row(row: tuple[Any, ...]) -> ChanlogError:
    """The error for an events row whose columns have the wrong types (off the hot path:
    only called once :func:`record_of` found something wrong)."""
    position = row[0]
    for (name, expected), value in zip(_COLUMN_TYPES, row, strict=True):
        if name == "stream" and value is None:
            continue
        if type(value) is not expected:
            problem = f"its {name} is {type(value).__name__}, not {expected.__name__}"
            break
    else:  # pragma: no cover - only called for a row that fails a check above
        problem = "it does not have the columns chanlog writes"
    if type(position) is not int:
        return _bad_position(position)
    return damaged_record(position, problem)


def _bad_position(position: object) -> StorageError:
    return StorageError(
        f"damaged chanlog database: a record's position is {short(position)}, not an "
        "integer (the file was changed outside chanlog)"
    )


# -- the head -------------------------------------------------------------------------------


def head_of(last: tuple[int, bytes] | None, path: Path | None = None) -> Head:
    """The head after the last record (a ``(position, chain_hash)`` row), or of an empty log.

    Raises:
        StorageError: the row's position is not an integer or its chain hash not 32 bytes
            (a damaged file: a changed byte can turn a column into another type). ``path``,
            when given, is named in the message.
    """
    if last is None:
        return Head(0, GENESIS_CHAIN_HASH)
    position, chain_hash = last
    if (
        type(position) is not int
        or position < 0
        or type(chain_hash) is not bytes
        or len(chain_hash) != 32
    ):
        where = f"{path}: " if path is not None else ""
        raise StorageError(
            f"{where}damaged chanlog database: the last record has position "
            f"{short(position, 80)} and chain hash {short(chain_hash, 80)} (an integer >= 0 and "
            "32 bytes were written); the file was changed outside chanlog"
        )
    return Head(position + 1, chain_hash)


# -- snapshots rows -------------------------------------------------------------------------


def snapshot_row(snapshot: StoredSnapshot) -> tuple[int, str, bytes, bytes]:
    """The ``snapshots`` row of ``snapshot``: position, versions (sorted JSON), data, hash."""
    return (
        snapshot.offset,
        orjson.dumps(snapshot.versions, option=orjson.OPT_SORT_KEYS).decode(),
        snapshot.data,
        snapshot.snapshot_hash,
    )


def snapshot_of(row: tuple[Any, ...], path: Path) -> StoredSnapshot:
    """The snapshot of a ``snapshots`` row (the columns of :func:`snapshot_row`).

    Raises:
        StorageError: the versions do not parse, or a column has the wrong type.
    """
    position, versions, data, snapshot_hash = row
    try:
        decoded = orjson.loads(versions)
    except orjson.JSONDecodeError as exc:
        raise StorageError(
            f"{path}: snapshot at offset {position} has unreadable versions: {exc}",
            snapshot_offset=position,
        ) from exc
    if (
        type(decoded) is not dict
        or not all(type(v) is int for v in decoded.values())
        or type(data) is not bytes
        or type(snapshot_hash) is not bytes
    ):
        raise StorageError(
            f"{path}: damaged snapshot at offset {position}: its versions, data or "
            "hash do not have the types chanlog writes (changed outside chanlog)",
            snapshot_offset=position,
        )
    return StoredSnapshot(position, decoded, data, snapshot_hash)
