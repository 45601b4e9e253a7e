"""The sqlite backend's stream index as ExposesStreamIndex shows it (the ``streams`` table
below the last whole block, the rows' stream columns after it), including damaged rows, and
the lean payload reads over the same index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_rows import index_pair_of
from chanlog.errors import IntegrityError, StorageError
from chanlog.store import EventStore
from chanlog.testing import sample_events

LENGTH = 40  # one whole block of 32 in the index, 8 records in the tail


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(LENGTH))
    return path


def _edit(path: Path, statement: str, *parameters: object) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute(statement, parameters)
        connection.commit()
    finally:
        connection.close()


def _index(path: Path) -> list[tuple[str, int]]:
    backend = SqliteBackend(path, read_only=True)
    try:
        return list(backend.stream_index())
    finally:
        backend.close()


def test_the_index_covers_the_indexed_block_and_the_tail(log_file: Path) -> None:
    expected = [
        (stream, event_index)
        for event_index, event in enumerate(sample_events(LENGTH))
        for stream in sorted(event.streams)
    ]
    assert _index(log_file) == expected


def test_a_deleted_index_row_shows_in_the_index(log_file: Path) -> None:
    # What verify() compares with the payloads: the read path relies on this table.
    before = _index(log_file)
    stream, position = before[10]
    _edit(log_file, "DELETE FROM streams WHERE stream = ? AND position = ?", stream, position)
    assert _index(log_file) == before[:10] + before[11:]


def test_a_changed_tail_row_shows_in_the_index(log_file: Path) -> None:
    before = _index(log_file)
    _edit(log_file, "UPDATE events SET stream = 'elsewhere' WHERE position = 35")
    after = _index(log_file)
    assert ("elsewhere", 35) in after
    assert len(after) == len(before)


@pytest.mark.parametrize(
    ("statement", "error", "match"),
    [
        (
            "UPDATE streams SET stream = CAST(stream AS BLOB) WHERE position = 3",
            IntegrityError,
            "offset 3: damaged stream index row",
        ),
        ("UPDATE events SET streams = '[1' WHERE position = 36", IntegrityError, "offset 36"),
        ("UPDATE events SET stream = x'07' WHERE position = 37", IntegrityError, "offset 37"),
    ],
)
def test_damaged_rows_are_errors_at_their_offset(
    log_file: Path, statement: str, error: type[Exception], match: str
) -> None:
    _edit(log_file, statement)
    with pytest.raises(error, match=match):
        _index(log_file)


def test_a_position_that_is_not_an_integer_drops_out_of_the_index(log_file: Path) -> None:
    # SQLite keeps text that is no number as text, which sorts after every integer: the pair
    # is missing from the index, which is what a comparison with the payloads finds.
    before = _index(log_file)
    _edit(log_file, "UPDATE streams SET position = 'x' WHERE position = 3")
    assert _index(log_file) == [pair for pair in before if pair[1] != 3]


def test_an_index_row_with_a_position_of_another_type_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="position 'x', not an integer"):
        index_pair_of(("stream", "x"))


@pytest.mark.parametrize(
    ("statement", "error", "match"),
    [
        ("UPDATE events SET payload = 'text' WHERE position = 0", IntegrityError, "payload"),
        ("UPDATE events SET event_type = x'00' WHERE position = 36", IntegrityError, "event_type"),
    ],
)
def test_damaged_rows_in_lean_reads(
    log_file: Path, statement: str, error: type[Exception], match: str
) -> None:
    _edit(log_file, statement)
    stream = sample_events(1)[0].objective_id.lower()
    backend = SqliteBackend(log_file, read_only=True)
    try:
        with pytest.raises(error, match=match):
            list(backend.read_stream_payloads(stream))
    finally:
        backend.close()
