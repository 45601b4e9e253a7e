"""Opening a PostgreSQL log read-only or without creating it, as a role that may not write
it, and the capabilities a verify pass reads (the stream index and the stored stream
versions) seen against the tables."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import psycopg
import pytest
from chanlog_postgres import PostgresBackend
from chanlog_postgres.schema import WRITE_PRIVILEGES
from psycopg.conninfo import make_conninfo

from chanlog.backends.capabilities import CountsStreams, ExposesStreamIndex, MayBeReadOnly
from chanlog.errors import NotFound, StorageError
from chanlog.records import StoredSnapshot
from chanlog.store import EventStore
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


@pytest.fixture
def role(admin: psycopg.Connection[Any], postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """A role of its own (name, and a DSN that logs in as it), dropped after the test."""
    name = f"chanlog_role_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield name, make_conninfo(postgres_dsn, user=name)
    finally:
        admin.execute(f"DROP OWNED BY {name}")
        admin.execute(f"DROP ROLE {name}")


def _grant(admin: psycopg.Connection[Any], schema: str, role: str, rights: dict[str, Any]) -> None:
    admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    for table, privileges in rights.items():
        found = admin.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
        if found is not None and found[0] is not None:  # meta exists once a store recorded
            admin.execute(f"GRANT {', '.join(privileges)} ON {schema}.{table} TO {role}")


def test_a_role_that_may_only_read_is_refused_a_writable_handle_when_it_opens(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, role: tuple[str, str]
) -> None:
    name, dsn = role
    writer = open_postgres()
    with writer.write() as transaction:
        transaction.append(stored_records(sample_events(3), transaction.head))
    _grant(admin, schema, name, {table: ["SELECT"] for table in WRITE_PRIVILEGES})
    with pytest.raises(StorageError) as error:
        PostgresBackend(dsn=dsn, schema=schema)
    assert str(error.value) == (
        f"postgres backend: role {name!r} may not write the log in schema {schema!r}: it "
        "lacks UPDATE on head, INSERT on events, INSERT on streams, INSERT on stream_versions, "
        "UPDATE on stream_versions, INSERT on snapshots, UPDATE on snapshots, DELETE on "
        "snapshots; GRANT them, or open the log read-only (read_only = true)"
    )
    reader = PostgresBackend(dsn=dsn, schema=schema, read_only=True)
    try:
        assert reader.head() == writer.head()
    finally:
        reader.close()


def test_the_rights_a_writer_needs_are_enough_and_keep_the_log_append_only(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, role: tuple[str, str]
) -> None:
    name, dsn = role
    with EventStore(open_postgres(), projections=[]) as owner:  # records its serializer
        owner.append_batch(sample_events(5))
    _grant(admin, schema, name, dict(WRITE_PRIVILEGES))
    events = sample_events(40, start=5)
    with EventStore(PostgresBackend(dsn=dsn, schema=schema), projections=[]) as store:
        assert store.append_batch(events) == list(range(5, 45))
        assert store.snapshot().offset == 45
        assert store.prune_snapshots(keep=0) == []
        assert store.verify() == 46
        # The role may not rewrite history: the server refuses it.
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        with pytest.raises(StorageError, match="permission denied for table events"):
            backend._fetch("rewrite a record", f"UPDATE {schema}.events SET payload = ''", ())


@pytest.mark.parametrize("exists", [True, False])
def test_a_session_the_server_keeps_read_only_is_refused_a_writable_handle(
    open_postgres: Open,
    admin: psycopg.Connection[Any],
    schema: str,
    role: tuple[str, str],
    exists: bool,
) -> None:
    name, dsn = role
    admin.execute(f"GRANT CREATE ON DATABASE {admin.info.dbname} TO {name}")
    if exists:
        open_postgres().close()
        _grant(admin, schema, name, dict(WRITE_PRIVILEGES))
    admin.execute(f"ALTER ROLE {name} SET default_transaction_read_only = on")
    with pytest.raises(StorageError) as error:
        PostgresBackend(dsn=dsn, schema=schema)
    assert str(error.value) == (
        "postgres backend: the server keeps this session read-only, so the log in schema "
        f"{schema!r} cannot be written (default_transaction_read_only is on for role {name!r} "
        "or this database); or open the log read-only (read_only = true)"
    )
    if exists:
        PostgresBackend(dsn=dsn, schema=schema, read_only=True).close()
    else:
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
        assert isinstance(index, Generator)  # closed below as a caller that stops early does
        next(index)
        index.close()
    assert len(list(backend.stream_index())) == 40
