"""The PostgreSQL backend beyond the conformance suite: its schema, paging, timeouts, failures
and validation across handles."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import psycopg
import pytest
from chanlog_postgres import READ_CHUNK, SCHEMA_VERSION, PostgresBackend, drop_schema
from chanlog_postgres.backend import COPY_THRESHOLD
from chanlog_postgres.schema import TABLES
from psycopg.conninfo import make_conninfo

from chanlog import ChannelCreated, EventStore, StateSigned
from chanlog.errors import InvalidTransition, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head
from chanlog.testing.events import sample_events, stored_records
from integrity.beside_a_writer import verify_beside_a_retake, verify_beside_a_writer
from snapshots.pruned_between_reads import read_while_pruned

pytestmark = pytest.mark.postgres

Open = Callable[..., PostgresBackend]
SIGNER = "0x742d35Cc6634C0532925a3b844Bc9e7595f0bEb0"
PEER = "0x" + "22" * 20
CHANNEL = "0x" + "c1" * 32


def _scalar(admin: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = admin.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- schema ------------------------------------------------------------------------------


def test_first_open_creates_the_tables_and_the_version(
    backend: PostgresBackend, admin: psycopg.Connection[Any], schema: str
) -> None:
    tables = {
        row[0]
        for row in admin.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
    }
    assert tables == set(TABLES)
    assert _scalar(admin, f'SELECT version FROM "{schema}".schema_version') == SCHEMA_VERSION
    assert backend.head() == Head(0, GENESIS_CHAIN_HASH)


def test_reopening_keeps_the_log(open_postgres: Open) -> None:
    first = open_postgres()
    with first.write() as transaction:
        transaction.append(stored_records(sample_events(3), transaction.head))
    head = first.head()
    assert open_postgres().head() == head


def test_many_processes_opening_a_new_schema_at_once_create_it_once(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        try:
            barrier.wait()
            open_postgres()
        except BaseException as exc:  # reported below: a thread cannot fail the test
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _scalar(admin, f'SELECT count(*) FROM "{schema}".schema_version') == 1
    assert _scalar(admin, f'SELECT count(*) FROM "{schema}".head') == 1


@pytest.mark.parametrize(
    ("version", "words"), [(SCHEMA_VERSION + 1, "newer"), (0, "knows no migration")]
)
def test_a_schema_of_another_version_is_refused(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, version: int, words: str
) -> None:
    open_postgres().close()
    admin.execute(f'UPDATE "{schema}".schema_version SET version = %s', (version,))
    with pytest.raises(StorageError, match=words):
        open_postgres()


def test_a_damaged_schema_is_refused(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str
) -> None:
    open_postgres().close()
    admin.execute(f'DROP TABLE "{schema}".streams')
    with pytest.raises(StorageError, match="missing tables: streams"):
        open_postgres()
    admin.execute(f'DELETE FROM "{schema}".schema_version')
    with pytest.raises(StorageError, match="schema_version has no row"):
        open_postgres()


def test_a_schema_holding_other_tables_is_never_used_nor_dropped(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, postgres_dsn: str
) -> None:
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(f'CREATE TABLE "{schema}".accounts (id int)')
    try:
        with pytest.raises(StorageError, match="not a chanlog log"):
            open_postgres()
        with pytest.raises(StorageError, match="refusing to drop"):
            drop_schema(postgres_dsn, schema)
        assert _scalar(admin, f'SELECT count(*) FROM "{schema}".accounts') == 0
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_drop_schema_removes_the_log(
    open_postgres: Open, admin: psycopg.Connection[Any], schema: str, postgres_dsn: str
) -> None:
    backend = open_postgres()
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(2), transaction.head))
    assert backend.drop_schema() is True
    assert backend.closed
    assert (
        admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
    )
    assert drop_schema(postgres_dsn, schema) is False
    with pytest.raises(StorageError, match="closed"):
        backend.head()
    # A new handle starts a new, empty log.
    assert open_postgres().head().length == 0


# -- writing -----------------------------------------------------------------------------


def test_records_that_do_not_continue_the_head_are_refused(backend: PostgresBackend) -> None:
    records = stored_records(sample_events(3), Head(0, GENESIS_CHAIN_HASH))
    with pytest.raises(StorageError, match="offset 1 does not continue the log"):  # noqa: SIM117
        with backend.write() as transaction:
            transaction.append(records[1:])
    assert backend.head().length == 0


@pytest.mark.parametrize("count", [1, COPY_THRESHOLD - 1, COPY_THRESHOLD, 3 * COPY_THRESHOLD])
def test_small_and_large_appends_store_the_same_rows(backend: PostgresBackend, count: int) -> None:
    # Below COPY_THRESHOLD rows travel as pipelined INSERTs, from it on by binary COPY.
    records = stored_records(sample_events(count), Head(0, GENESIS_CHAIN_HASH))
    with backend.write() as transaction:
        transaction.append(records)
    assert list(backend.read(0, count)) == records
    objective = records[0].streams[1]
    assert backend.stream_version(objective) == len(
        [record for record in records if objective in record.streams]
    )


def test_a_stream_named_twice_by_one_record_counts_once(backend: PostgresBackend) -> None:
    record = stored_records(sample_events(1), Head(0, GENESIS_CHAIN_HASH))[0]
    doubled = attrs.evolve(record, streams=(record.streams[0], record.streams[0]))
    with backend.write() as transaction:
        transaction.append([doubled])
    assert backend.stream_version(record.streams[0]) == 1
    assert [r.offset for r in backend.read_stream(record.streams[0])] == [0]


def test_find_many_looks_up_ids_in_one_query(backend: PostgresBackend) -> None:
    records = stored_records(sample_events(5), Head(0, GENESIS_CHAIN_HASH))
    with backend.write() as transaction:
        transaction.append(records[:3])
    ids = [record.event_id for record in records]
    assert backend.find_many(ids) == [0, 1, 2, None, None]
    assert backend.find_many([]) == []
    with backend.write() as transaction:
        assert transaction.find_many(ids[::-1]) == [None, None, 2, 1, 0]


def test_a_writer_gives_up_after_lock_timeout(open_postgres: Open) -> None:
    holder = open_postgres()
    impatient = open_postgres(lock_timeout=0.2)
    with (
        holder.write(),
        pytest.raises(StorageError, match="held the writer lock") as waited,
        impatient.write(),
    ):
        pass
    assert "lock_timeout (0.2 s)" in str(waited.value)
    with impatient.write() as transaction:  # the lock is free again
        transaction.append(stored_records(sample_events(1), transaction.head))
    assert holder.head().length == 1


def test_the_server_end_of_a_writers_session_has_the_clients_keepalives(
    open_postgres: Open, postgres_dsn: str, schema: str
) -> None:
    """A writer whose host vanishes mid-transaction holds the head row lock until the server
    notices: with the operating system's keepalives (two hours and more), every other
    process's appends fail after lock_timeout meanwhile (ADR 0068)."""

    def server_side(backend: PostgresBackend) -> list[str]:
        with backend.write() as transaction:
            connection = transaction._connection  # the writer's own session
            return [
                str(connection.execute(f"SHOW tcp_keepalives_{name}").fetchone()[0])  # type: ignore[index]
                for name in ("idle", "interval", "count")
            ]

    assert server_side(open_postgres()) == ["10", "5", "3"]  # the defaults parse_dsn adds
    own = make_conninfo(postgres_dsn, keepalives_idle=7, keepalives_interval=2)
    backend = PostgresBackend(own, schema=schema)
    try:
        assert server_side(backend) == ["7", "2", "3"]  # the DSN's own, as the client's
    finally:
        backend.close()


def test_validation_sees_what_other_handles_appended(open_postgres: Open) -> None:
    created = ChannelCreated(
        channel_id=CHANNEL, participants=(SIGNER, PEER), challenge_duration=60, timestamp_ms=1
    )

    def signed(turn: int, signer: str = SIGNER) -> StateSigned:
        return StateSigned(
            channel_id=CHANNEL,
            turn_num=turn,
            state_hash="0x" + f"{turn:064x}",
            signer=signer,
            signature="0x" + "ab" * 65,
            timestamp_ms=10 + turn,
        )

    with EventStore(open_postgres()) as one, EventStore(open_postgres()) as two:
        assert one.append(created) == 0
        # The second store never saw the create; it folds it inside the writer lock.
        assert two.append(signed(1)) == 1
        with pytest.raises(InvalidTransition):
            one.append(signed(2, signer="0x" + "33" * 20))
        assert len(one) == 2
        assert one.append(signed(2)) == 2
        assert len(two) == 3


# -- reading -----------------------------------------------------------------------------


def test_reads_stream_page_by_page(
    backend: PostgresBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = 2 * READ_CHUNK + 100
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(total, objectives=1), transaction.head))
    queries: list[str] = []
    fetch = backend._fetch

    def counting_fetch(action: str, query: str, params: Any) -> list[tuple[Any, ...]]:
        queries.append(action)
        return fetch(action, query, params)

    monkeypatch.setattr(backend, "_fetch", counting_fetch)
    reader = backend.read(0, total)
    assert next(reader).offset == 0
    assert queries == ["read records"]  # one page so far, not the log
    assert [record.offset for record in reader] == list(range(1, total))
    assert queries == ["read records"] * 3
    queries.clear()
    objective = sample_events(1, objectives=1)[0].objective_id
    assert len(list(backend.read_stream(objective, 10, total - 10))) == total - 20
    assert queries == ["read a stream"] * 3


def test_latest_snapshot_before_zero_and_negative(backend: PostgresBackend) -> None:
    assert backend.latest_snapshot(before=-1) is None
    assert backend.latest_snapshot(before=0) is None


# -- failures ----------------------------------------------------------------------------


def test_a_connection_the_server_dropped_while_idle_fails_no_operation(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[Any]
) -> None:
    """What a server restart or an administrator's ``pg_terminate_backend`` does to an idle
    pooled connection: it is replaced before it is lent, so no caller sees the drop."""
    application = f"chanlog-drop-{schema[-8:]}"
    backend = PostgresBackend(
        dsn=make_conninfo(postgres_dsn, application_name=application), schema=schema
    )
    try:
        assert backend.head().length == 0
        dropped = admin.execute(
            # The timeout makes the call wait until the server process has exited.
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM pg_stat_activity WHERE application_name = %s",
            (application,),
        ).fetchone()
        assert dropped is not None
        assert dropped[0] >= 1
        assert backend.head().length == 0
        with backend.write() as transaction:
            transaction.append(stored_records(sample_events(1), transaction.head))
        assert backend.head().length == 1
    finally:
        backend.close()


def test_a_full_pool_is_a_clear_error(open_postgres: Open) -> None:
    backend = open_postgres(pool_size=2, pool_timeout=0.3)
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with backend.write():
            holding.set()
            release.wait(30)

    def queue_behind_it() -> None:
        with backend.write():
            pass

    holder = threading.Thread(target=hold_the_lock)
    queued = threading.Thread(target=queue_behind_it)
    holder.start()
    try:
        assert holding.wait(30)
        # A second writer takes the second pooled connection and queues behind the lock.
        queued.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = backend._pool.get_stats()
            if stats.get("pool_size") == 2 and stats.get("pool_available") == 0:
                break
            time.sleep(0.01)
        with pytest.raises(StorageError, match="all 2 pooled connections stayed busy"):
            backend.head()
    finally:
        release.set()
        holder.join()
        queued.join()


def test_wait_times_out_ignores_foreign_notifications_and_wakes_on_appends(
    open_postgres: Open, admin: psycopg.Connection[Any]
) -> None:
    watcher = open_postgres()
    writer = open_postgres()
    assert watcher.wait(0, 0.05) is False
    admin.execute("SELECT pg_notify(%s, 'not a length')", (watcher.channel,))
    admin.execute("SELECT pg_notify(%s, '0')", (watcher.channel,))
    assert watcher.wait(0, 0.2) is False

    def append_soon() -> None:
        time.sleep(0.05)
        with writer.write() as transaction:
            transaction.append(stored_records(sample_events(2), transaction.head))

    thread = threading.Thread(target=append_soon)
    thread.start()
    try:
        assert watcher.wait(0, 30) is True
    finally:
        thread.join()
    assert watcher.wait(1, 0) is True
    assert watcher.wait(2, 0) is False


def test_a_closed_backend_refuses_every_operation(backend: PostgresBackend) -> None:
    backend.close()
    for operation in (
        backend.head,
        lambda: backend.write().__enter__(),
        lambda: list(backend.read(0, 1)),
        lambda: backend.find(bytes(32)),
        lambda: backend.wait(0, 0.01),
    ):
        with pytest.raises(StorageError, match="closed"):
            operation()
    backend.close()
    assert "schema=" in repr(backend)


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read", "serializable"])
def test_handles_opening_and_appending_to_one_new_log_at_once_all_succeed(
    postgres_dsn: str, schema: str, isolation: str
) -> None:
    """Three handles open one new log at once, append at once and ask for one consumer's
    lease: all succeed, with dense offsets, and one gets the lease. Before, opening at once
    refused all but one handle in most trials (a duplicate serializer row in ``meta``).

    A DBA may also set ``default_transaction_isolation`` for the database or the role (here
    through the DSN's options, as it would reach the session). chanlog's locks need READ
    COMMITTED and set it: under a default of REPEATABLE READ or SERIALIZABLE, about half of
    the concurrent appends failed with "could not serialize access"."""
    escaped = isolation.replace(" ", "\\ ")
    dsn = make_conninfo(postgres_dsn, options=f"-c default_transaction_isolation={escaped}")
    opened: list[PostgresBackend] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_and_append(index: int) -> None:
        try:
            backend = PostgresBackend(dsn=dsn, schema=schema)
            with lock:
                opened.append(backend)
            store = EventStore(backend, projections=[])
            for event in sample_events(60, start=index * 60):
                store.append(event)
            backend.ensure_consumer("shared", 0, ["chanlog.>"])
            backend.acquire_lease("shared", f"runner-{index}", 30)
        except BaseException as exc:  # collected: the lease is one runner's
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=open_and_append, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        # Only the lease is refused, and only to the runners that came second and third.
        assert all(type(error).__name__ == "LeaseHeld" for error in errors), errors
        assert len(errors) == 2
        assert [record.offset for record in opened[0].read(0, 1000)] == list(range(180))
        with opened[0].write() as transaction:
            assert transaction.head.length == 180
    finally:
        for backend in opened:
            backend.close()


def test_verify_beside_a_writer_of_the_same_log(open_postgres: Open) -> None:
    """The stream index and the snapshots verify reads after the log's length may hold what
    another handle committed since: no trace of a cut (tests/integrity/beside_a_writer.py)."""
    with EventStore(open_postgres()) as writer:
        verify_beside_a_writer(writer, open_postgres())


def test_verify_beside_a_snapshot_taken_again(open_postgres: Open) -> None:
    """A snapshot taken again at an offset whose announcement verify read is announced past
    the length verify read: no change outside chanlog (ADR 0056)."""
    verify_beside_a_retake(open_postgres(), open_postgres(), open_postgres())


@pytest.mark.parametrize("opening", [False, True], ids=["reconstruct", "open"])
def test_a_reader_whose_base_is_pruned_between_its_reads_folds_what_a_replay_does(
    open_postgres: Open, opening: bool
) -> None:
    """Read committed: the reader's read of an incremental snapshot and of its base are two
    statements, and a prune commits between them. It falls back, as on SQLite."""
    read_while_pruned(open_postgres(), open_postgres(), open_postgres(), opening=opening)
