"""A log records the serializer that wrote it; a store configured with another is refused
with a ConfigError naming both, not an integrity failure at offset 0 (issue 18 item 2,
ADR 0031). Logs written before the record existed are recorded by their first writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlog import ConfigError, EventStore, IntegrityError, StorageError
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.backends.sqlite import SqliteBackend
from chanlog.records import Head, StoredRecord, StoredSnapshot
from chanlog.testing.events import sample_events
from sqlite_edits import edit_database

msgpack_plugin = pytest.importorskip("chanlog_msgpack")


def msgpack() -> Any:
    return msgpack_plugin.MsgpackSerializer()


def write_log(path: Path, serializer: Any = None, count: int = 3) -> None:
    with EventStore(SqliteBackend(path), projections=[], serializer=serializer) as store:
        store.append_batch(sample_events(count))


def recorded(path: Path) -> str | None:
    backend = SqliteBackend(path, read_only=True)
    try:
        return backend.recorded_serializer()
    finally:
        backend.close()


def forget_the_serializer(path: Path) -> None:
    """Make ``path`` look like a log written before chanlog recorded its serializer."""
    edit_database(path, "DELETE FROM chanlog_meta WHERE key = 'serializer'")


@pytest.mark.parametrize("read_only", [False, True])
def test_another_serializer_is_a_config_error_naming_both(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "node.db"
    write_log(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as error:
        EventStore(SqliteBackend(path, read_only=read_only), serializer=msgpack())
    message = str(error.value)
    assert "written with serializer 'json'" in message
    assert "configured with serializer 'msgpack'" in message
    assert str(path) in message
    assert error.value.key == "serializer"
    assert path.read_bytes() == before
    with EventStore(SqliteBackend(path, read_only=True), projections=[]) as store:
        assert store.verify() == 3


def test_a_msgpack_log_refuses_json(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    write_log(path, msgpack())
    assert recorded(path) == "msgpack"
    with pytest.raises(ConfigError, match="written with serializer 'msgpack'"):
        EventStore(SqliteBackend(path), projections=[])
    with EventStore(SqliteBackend(path), serializer=msgpack(), projections=[]) as store:
        assert store.verify() == 3


def test_a_new_log_is_recorded_when_a_writer_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    EventStore(SqliteBackend(path), serializer=msgpack()).close()
    assert recorded(path) == "msgpack"
    EventStore(SqliteBackend(path), serializer=msgpack()).close()
    with pytest.raises(ConfigError):
        EventStore(SqliteBackend(path))


def test_an_older_log_is_recorded_by_its_first_writer(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    write_log(path)
    forget_the_serializer(path)
    with EventStore(SqliteBackend(path, read_only=True), projections=[]) as reader:
        assert reader.verify() == 3  # a reader records nothing
    assert recorded(path) is None
    with pytest.raises(ConfigError) as error:
        EventStore(SqliteBackend(path), serializer=msgpack())
    assert "records no serializer" in str(error.value)
    assert "does not decode with serializer 'msgpack'" in str(error.value)
    assert recorded(path) is None  # a wrong setting is not made permanent
    EventStore(SqliteBackend(path), projections=[]).close()
    assert recorded(path) == "json"


def test_an_empty_older_log_takes_its_first_writers_serializer(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    SqliteBackend(path).close()  # created by a backend alone: nothing recorded
    assert recorded(path) is None
    with EventStore(SqliteBackend(path), serializer=msgpack(), projections=[]) as store:
        store.append_batch(sample_events(2))
    assert recorded(path) == "msgpack"


def test_a_reader_of_an_older_log_with_the_wrong_serializer_sees_undecodable_records(
    tmp_path: Path,
) -> None:
    # What ADR 0031 leaves as it was: nothing recorded, so nothing to compare with.
    path = tmp_path / "node.db"
    write_log(path)
    forget_the_serializer(path)
    with (
        EventStore(
            SqliteBackend(path, read_only=True), serializer=msgpack(), projections=[]
        ) as store,
        pytest.raises(IntegrityError, match="offset 0"),
    ):
        store.verify()


def test_the_memory_backend_behaves_the_same() -> None:
    backend = MemoryBackend()
    store = EventStore(backend)
    assert backend.recorded_serializer() == "json"
    with pytest.raises(ConfigError, match="memory log was written with serializer 'json'"):
        EventStore(backend, serializer=msgpack())
    store.close()
    assert MemoryBackend(read_only=True).recorded_serializer() is None
    with EventStore(MemoryBackend(read_only=True), serializer=msgpack()) as reader:
        assert len(reader) == 0


class PlainBackend:
    """A backend with the Backend protocol only: no serializer record to keep."""

    name = "plain"
    shared = False

    def __init__(self) -> None:
        self._inner = MemoryBackend()

    def head(self) -> Head:
        return self._inner.head()

    def write(self) -> Any:
        return self._inner.write()

    def read(self, start: int, end: int) -> Iterator[StoredRecord]:
        return self._inner.read(start, end)

    def read_stream(self, stream: str, start: int = 0, end: int | None = None) -> Any:
        return self._inner.read_stream(stream, start, end)

    def find(self, event_id: bytes) -> int | None:
        return self._inner.find(event_id)

    def stream_version(self, stream: str) -> int:
        return self._inner.stream_version(stream)

    def save_snapshot(self, snapshot: StoredSnapshot) -> None:
        self._inner.save_snapshot(snapshot)

    def latest_snapshot(self, before: int | None = None) -> StoredSnapshot | None:
        return self._inner.latest_snapshot(before)

    def wait(self, length: int, timeout: float) -> bool:
        return self._inner.wait(length, timeout)

    def close(self) -> None:
        self._inner.close()


def test_a_backend_without_the_capability_is_not_checked() -> None:
    backend = PlainBackend()
    assert isinstance(backend, Backend)
    with EventStore(backend, projections=[]) as store:
        store.append_batch(sample_events(2))
    with EventStore(backend, projections=[], serializer=msgpack()) as store:
        assert len(store) == 2


def test_a_damaged_record_of_the_serializer_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    write_log(path)
    edit_database(path, "UPDATE chanlog_meta SET value = x'ff' WHERE key = 'serializer'")
    with pytest.raises(StorageError, match=r"chanlog_meta 'serializer' is b'\\xff', not text"):
        EventStore(SqliteBackend(path), projections=[])
