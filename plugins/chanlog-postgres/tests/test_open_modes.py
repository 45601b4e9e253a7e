"""Opening a PostgreSQL log read-only or without creating it, and the capabilities a verify
pass reads (the stream index and the stored stream versions) seen against the tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from chanlog_postgres import PostgresBackend

from chanlog.backends.capabilities import CountsStreams, ExposesStreamIndex, MayBeReadOnly
from chanlog.errors import NotFound, StorageError
from chanlog.records import StoredSnapshot
from chanlog.testing.events import sample_events, stored_records

pytestmark = pytest.mark.postgres

Open = Callable[..., PostgresBackend]


def _schema_exists(admin: psycopg.Connection[Any], schema: str) -> bool:
    return (
        admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        is not None
    )


@pytest.mark.parametrize(
    ("options", "reason"), [({"read_only": True}, "read_only"), ({"create": False}, "create")]
)
def test_a_missing_log_is_refused_and_never_created(
    open_postgres: Open,
    admin: psycopg.Connection[Any],
    schema: str,
    options: dict[str, bool],
    reason: str,
) -> None:
    with pytest.raises(NotFound, match="holds no chanlog log") as error:
        open_postgres(**options)
    assert repr(schema) in str(error.value)
    assert reason in str(error.value)
    assert not _schema_exists(admin, schema)


def test_create_false_opens_an_existing_log_for_writing(open_postgres: Open) -> None:
    open_postgres().close()
    backend = open_postgres(create=False)
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(2), transaction.head))
    assert backend.head().length == 2


def test_a_read_only_handle_refuses_writes_and_so_does_the_server(open_postgres: Open) -> None:
    writer = open_postgres()
    with writer.write() as transaction:
        transaction.append(stored_records(sample_events(3), transaction.head))
    reader = open_postgres(read_only=True)
    assert isinstance(reader, MayBeReadOnly)
    assert reader.read_only
    assert "read_only" in repr(reader)
    with pytest.raises(StorageError, match="opened read-only"), reader.write():
        pass
    with pytest.raises(StorageError, match="opened read-only"):
        reader.save_snapshot(StoredSnapshot(1, {}, b"", bytes(32)))
    with pytest.raises(StorageError, match="opened read-only"):
        reader.drop_schema()
    # The sessions themselves are read-only: a write that got past the checks would fail.
    with pytest.raises(StorageError, match="read-only transaction"):
        reader._fetch("sneak a write", reader._sql.set_head + " RETURNING length", (0, bytes(32)))
    assert reader.head() == writer.head()
    assert reader.wait(2, 0.01)


def test_the_stream_index_shows_the_streams_table(
    backend: PostgresBackend, admin: psycopg.Connection[Any], schema: str
) -> None:
    records = stored_records(sample_events(6, objectives=2), backend.head())
    with backend.write() as transaction:
        transaction.append(records)
    assert isinstance(backend, ExposesStreamIndex)
    pairs = list(backend.stream_index())
    assert len(pairs) == 12
    message = records[4].streams[0]
    admin.execute(f'DELETE FROM "{schema}".streams WHERE stream = %s', (message,))
    after = list(backend.stream_index())
    assert after == [pair for pair in pairs if pair[0] != message]  # what verify must catch


def test_stored_stream_versions_show_the_stream_versions_table(
    backend: PostgresBackend, admin: psycopg.Connection[Any], schema: str
) -> None:
    records = stored_records(sample_events(6, objectives=2), backend.head())
    with backend.write() as transaction:
        transaction.append(records)
    assert isinstance(backend, CountsStreams)
    objective = records[0].streams[1]
    assert backend.stored_stream_versions()[objective] == 3
    admin.execute(
        f'UPDATE "{schema}".stream_versions SET version = 7 WHERE stream = %s', (objective,)
    )
    assert backend.stored_stream_versions()[objective] == 7  # what verify must catch
    assert backend.stream_version(objective) == 7


def test_an_abandoned_stream_index_gives_its_connection_back(backend: PostgresBackend) -> None:
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(20), transaction.head))
    for _ in range(2 * backend.pool_size):
        index = backend.stream_index()
        next(index)
        index.close()
    assert len(list(backend.stream_index())) == 40
