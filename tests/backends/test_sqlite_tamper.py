"""A log edited outside chanlog (raw sqlite3) is caught by verify() at the first bad offset."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import DecodeError, IntegrityError
from chanlog.store import EventStore
from chanlog.testing import sample_events

LENGTH = 40


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(sample_events(LENGTH))
        assert store.verify() == LENGTH
    return path


@pytest.fixture
def edit(log_file: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(log_file)
    yield connection
    connection.commit()
    connection.close()


def _verify_fails_at(path: Path) -> int:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        with pytest.raises(IntegrityError) as error:
            store.verify()
        assert f"offset {error.value.offset}" in str(error.value)
        return error.value.offset


def _payload(connection: sqlite3.Connection, position: int) -> bytes:
    row = connection.execute("SELECT payload FROM events WHERE position = ?", (position,))
    payload: bytes = row.fetchone()[0]
    return payload


@pytest.mark.parametrize("position", [0, 17, LENGTH - 1])
def test_one_changed_payload_byte(log_file: Path, edit: sqlite3.Connection, position: int) -> None:
    payload = bytearray(_payload(edit, position))
    index = payload.index(b'"peer_id":"') + len(b'"peer_id":"')
    payload[index] ^= 0x01  # still valid JSON, a different peer
    edit.execute("UPDATE events SET payload = ? WHERE position = ?", (bytes(payload), position))
    edit.commit()
    assert _verify_fails_at(log_file) == position


def test_a_payload_byte_that_breaks_the_json(log_file: Path, edit: sqlite3.Connection) -> None:
    payload = bytearray(_payload(edit, 9))
    payload[0] = ord("[")
    edit.execute("UPDATE events SET payload = ? WHERE position = 9", (bytes(payload),))
    edit.commit()
    # A store that decodes the log as it opens meets the damage first; either way the
    # error names the offset.
    with (
        pytest.raises((DecodeError, IntegrityError)) as error,
        EventStore(SqliteBackend(log_file), projections=[]) as store,
    ):
        store.verify()
    assert isinstance(error.value, (DecodeError, IntegrityError))
    assert error.value.offset == 9


def test_a_deleted_row(log_file: Path, edit: sqlite3.Connection) -> None:
    edit.execute("DELETE FROM events WHERE position = 12")
    edit.execute("DELETE FROM streams WHERE position = 12")
    edit.commit()
    assert _verify_fails_at(log_file) == 12


def test_a_deleted_row_after_the_last_index_block(log_file: Path, edit: sqlite3.Connection) -> None:
    # 40 records: 32-39 are not in the streams index yet, 35 is only in the events table.
    edit.execute("DELETE FROM events WHERE position = 35")
    edit.commit()
    assert _verify_fails_at(log_file) == 35


def test_deleted_last_rows_are_only_seen_against_a_remembered_head(
    log_file: Path, edit: sqlite3.Connection
) -> None:
    # Schema version 2 keeps no head row (ADR 0018): what remains is a valid, shorter log,
    # which only a witness of the longer one shows cut (ADR 0024): here <db>-head.
    edit.execute("DELETE FROM events WHERE position >= ?", (LENGTH - 3,))
    edit.commit()
    assert _verify_fails_at(log_file) == LENGTH - 3
    Path(f"{log_file}-head").unlink()  # without the witness, nothing shows the cut
    with EventStore(SqliteBackend(log_file), projections=[]) as store:
        assert store.verify() == LENGTH - 3


def test_two_swapped_rows(log_file: Path, edit: sqlite3.Connection) -> None:
    edit.execute("UPDATE events SET position = -1 WHERE position = 8")
    edit.execute("UPDATE events SET position = 8 WHERE position = 25")
    edit.execute("UPDATE events SET position = 25 WHERE position = -1")
    edit.commit()
    assert _verify_fails_at(log_file) == 8


def test_two_swapped_payloads_with_their_ids(log_file: Path, edit: sqlite3.Connection) -> None:
    # Each row stays self-consistent (its id matches its payload); only the chain notices.
    select = "SELECT event_id, payload FROM events WHERE position = ?"
    first = edit.execute(select, (30,)).fetchone()
    second = edit.execute(select, (31,)).fetchone()
    update = "UPDATE events SET event_id = ?, payload = ? WHERE position = ?"
    edit.execute(update, (b"\x00" * 32, second[1], 30))  # a placeholder id keeps ids unique
    edit.execute(update, (*first, 31))
    edit.execute(update, (*second, 30))
    edit.commit()
    assert _verify_fails_at(log_file) == 30


def test_a_changed_chain_hash(log_file: Path, edit: sqlite3.Connection) -> None:
    edit.execute("UPDATE events SET chain_hash = ? WHERE position = 5", (bytes(32),))
    edit.commit()
    assert _verify_fails_at(log_file) == 5


def test_a_changed_event_id(log_file: Path, edit: sqlite3.Connection) -> None:
    edit.execute("UPDATE events SET event_id = ? WHERE position = 33", (b"\x01" * 32,))
    edit.commit()
    assert _verify_fails_at(log_file) == 33


def test_an_untouched_log_verifies(log_file: Path) -> None:
    with EventStore(SqliteBackend(log_file), projections=[]) as store:
        assert store.verify() == LENGTH
