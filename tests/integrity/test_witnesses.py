"""What verify detects (ADR 0024): every kind of tampering the ADR lists, each reported as an
IntegrityError naming the offset; and what it says it cannot detect, shown to pass."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.errors import IntegrityError, InvalidArgument
from chanlog.records import Witness
from chanlog.store import EventStore
from chanlog.testing import sample_events
from chanlog.verification import parse_witness
from chanlog.workload import Workload
from sqlite_edits import edit_database

LENGTH = 100


def _events(count: int = LENGTH, start: int = 0) -> list:  # type: ignore[type-arg]
    return list(sample_events(count, start=start))


def _write(path: Path, count: int = LENGTH) -> Witness:
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(_events(count))
        head = store.backend.head()
    return Witness(head.length - 1, head.chain_hash, "the test")


def _fails_at(path: Path, *witnesses: Witness) -> IntegrityError:
    backend = SqliteBackend(path, read_only=True)
    with (
        EventStore(backend, projections=[], read_only=True) as store,
        pytest.raises(IntegrityError) as error,
    ):
        store.verify(witnesses=witnesses)
    assert error.value.offset is not None
    assert f"offset {error.value.offset}" in str(error.value)
    return error.value


def _forget_head(path: Path) -> None:
    Path(f"{path}-head").unlink(missing_ok=True)


def _cut(path: Path, keep: int) -> None:
    edit_database(path, f"DELETE FROM events WHERE position >= {keep}")
    edit_database(path, f"DELETE FROM streams WHERE position >= {keep}")


# -- a cut tail ----------------------------------------------------------------------------


def test_a_cut_tail_without_any_witness_verifies(tmp_path: Path) -> None:
    """The limit the ADR names: a log alone cannot show that its end is missing."""
    path = tmp_path / "log.db"
    _write(path)
    _cut(path, 60)
    _forget_head(path)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        assert store.verify() == 60


def test_a_cut_tail_is_found_by_an_expected_head(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    head = _write(path)
    _cut(path, 60)
    _forget_head(path)
    error = _fails_at(path, head)
    assert error.offset == 60 and "cut from its tail" in str(error)


def test_a_cut_tail_is_found_by_the_head_the_store_remembered(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path)
    assert Path(f"{path}-head").exists()
    _cut(path, 60)
    error = _fails_at(path)
    assert error.offset == 60 and "remembered" in str(error)


def test_a_cut_tail_is_found_by_a_replica(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path)
    replica = tmp_path / "replica.db"
    shutil.copy(path, replica)
    _cut(path, 60)
    _forget_head(path)
    with EventStore(SqliteBackend(replica, read_only=True), projections=[]) as copy:
        head = copy.backend.head()
    error = _fails_at(path, Witness(head.length - 1, head.chain_hash, f"replica {replica}"))
    assert error.offset == 60 and "replica" in str(error)


def test_a_cut_tail_is_found_by_a_snapshot_it_left_behind(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    workload = Workload(channels=3, turns=20, seed=3, messages=0, challenge_probability=0)
    with EventStore(SqliteBackend(path)) as store:
        events = list(workload.events())
        store.append_batch(events[:50])
        snapshot = store.snapshot()  # snapshot-created at offset 50
        store.append_batch(events[50:])
    _cut(path, 40)  # the snapshot row of offset 50 stays
    _forget_head(path)
    error = _fails_at(path)
    assert error.offset == 40 and f"first {snapshot.offset} records" in str(error)


def test_a_rewritten_tail_is_found_where_it_differs_from_the_witness(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    head = _write(path)
    _cut(path, 60)
    _forget_head(path)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(_events(40, start=1000))  # as long as before, other events
        assert len(store) == LENGTH
    _forget_head(path)
    error = _fails_at(path, head)
    assert error.offset == LENGTH - 1 and "chain hash differs" in str(error)


def test_a_log_longer_than_its_witness_agrees_with_it(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    head = _write(path)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        store.append_batch(_events(10, start=LENGTH))
        report = store.check_integrity(witnesses=[head])
    assert report.records == LENGTH + 10
    assert head in report.witnesses
    assert any(witness.source == "the head chanlog remembered" for witness in report.witnesses)


# -- the stream index ----------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 17, 63])
def test_a_deleted_stream_index_row_is_found(tmp_path: Path, position: int) -> None:
    path = tmp_path / "log.db"
    _write(path)
    edit_database(path, f"DELETE FROM streams WHERE position = {position}")
    error = _fails_at(path)
    assert error.offset == position and "stream index" in str(error)


def test_an_added_stream_index_row_is_found(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path)
    edit_database(path, "INSERT INTO streams (stream, position) VALUES ('0xfeed', 20)")
    error = _fails_at(path)
    assert error.offset == 20 and "stream index" in str(error)


def test_a_changed_stream_column_is_found(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path)
    edit_database(path, "UPDATE events SET stream = '0xfeed' WHERE position = 80")
    error = _fails_at(path)
    assert error.offset == 80


def test_the_report_counts_index_entries(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    _write(path)
    with EventStore(SqliteBackend(path), projections=[]) as store:
        report = store.check_integrity()
    assert report.index_entries == sum(len(event.streams) for event in _events())


# -- snapshots -----------------------------------------------------------------------------


def _snapshotted(path: Path) -> int:
    workload = Workload(channels=3, turns=20, seed=4, messages=0, challenge_probability=0)
    with EventStore(SqliteBackend(path)) as store:
        events = list(workload.events())
        store.append_batch(events[:30])
        store.snapshot()
        store.append_batch(events[30:])
        assert store.check_integrity().snapshots == 1
        return 30


def test_a_changed_snapshot_byte_is_found(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    offset = _snapshotted(path)
    connection = sqlite3.connect(path)
    data = bytearray(connection.execute("SELECT data FROM snapshots").fetchone()[0])
    data[-2] ^= 0x01
    connection.execute("UPDATE snapshots SET data = ?", (bytes(data),))
    connection.commit()
    connection.close()
    error = _fails_at(path)
    assert error.offset == offset and f"snapshot at offset {offset}" in str(error)


def test_a_snapshot_with_a_matching_new_hash_is_still_found(tmp_path: Path) -> None:
    from chanlog.hashing import keccak256

    path = tmp_path / "log.db"
    offset = _snapshotted(path)
    connection = sqlite3.connect(path)
    data = connection.execute("SELECT data FROM snapshots").fetchone()[0] + b" "
    connection.execute("UPDATE snapshots SET data = ?, snapshot_hash = ?", (data, keccak256(data)))
    connection.commit()
    connection.close()
    error = _fails_at(path)
    assert error.offset == offset


# -- witnesses as text ---------------------------------------------------------------------


def test_parse_witness_round_trips_and_refuses_garbage() -> None:
    witness = Witness(41, bytes(range(32)), "--expect-head")
    assert parse_witness(str(witness)) == witness
    for text in ["", "12", "x:00", "-1:" + "00" * 32, "3:" + "00" * 31, "3:zz"]:
        with pytest.raises(InvalidArgument, match="OFFSET:HASH"):
            parse_witness(text)


def test_witnesses_hold_for_the_memory_backend_too() -> None:
    with EventStore(MemoryBackend(), projections=[]) as store:
        store.append_batch(_events(20))
        head = store.backend.head()
        witness = Witness(head.length - 1, head.chain_hash)
        assert store.verify(witnesses=[witness]) == 20
        with pytest.raises(IntegrityError, match=r"offset 20: .*cut from its tail"):
            store.verify(witnesses=[Witness(25, head.chain_hash)])
        with pytest.raises(IntegrityError, match="offset 10: the chain hash differs"):
            store.verify(witnesses=[Witness(10, head.chain_hash)])
