"""Group commit on PostgreSQL with the connection lost at every point of a group's
transaction (ADR 0029, ADR 0041, ADR 0042, ADR 0012): eight threads append one event per
call through a proxy that cuts the session before BEGIN, at the head's lock, at the insert
and at COMMIT (before the server gets it, or after it committed and before the client
heard), with expected versions and refused appends mixed in, while other processes append
to the same schema directly.

What must hold: an append that returned an offset is in the log at that offset, once; one
that raised is absent or, appended again, returns the offset where it is; offsets are dense
and the chain verifies; the store's length, state and subscribers agree with the log; no
thread hangs (joined with a timeout)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chanlog_postgres import PostgresBackend
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from chanlog import (
    ChannelCreated,
    ConcurrencyError,
    EventStore,
    InvalidTransition,
    ObjectiveCreated,
    RecordedEvent,
    StorageError,
)
from chanlog_samples import SIGNER, make_signed, thread_channel, thread_channels_created
from cutting_proxy import CuttingProxy, Where

pytestmark = pytest.mark.postgres

THREADS = 8
DEADLINE = 120.0  # seconds: a bound for a thread or process, not a timing claim
NO_CHANNEL = "0x" + "99" * 32  # signing on it is refused: no such channel

CUT_POINTS: list[tuple[bytes, Where]] = [
    (b"BEGIN\x00", "before"),  # nothing of the transaction reaches the server
    (b"BEGIN\x00", "reply"),
    (b"FOR UPDATE", "before"),  # the head's lock: the writer lock of ADR 0012
    (b"FOR UPDATE", "reply"),  # the lock granted, then the connection lost
    (b"INSERT INTO", "before"),
    (b"INSERT INTO", "reply"),  # the records inserted, then the connection lost
    (b"COMMIT\x00", "before"),  # everything but the commit: rolled back
    (b"COMMIT\x00", "reply"),  # committed, and reported as failed (ADR 0042)
]

CHILD = """
import sys
from chanlog import ChannelCreated, ConcurrencyError, EventStore, InvalidTransition
from chanlog_postgres import PostgresBackend
sys.path.insert(0, sys.argv[4])
from chanlog_samples import SIGNER, make_signed

channel = "0x" + sys.argv[3] * 32
backend = PostgresBackend(dsn=sys.argv[1], schema=sys.argv[2])
with EventStore(backend) as store:
    store.append(ChannelCreated(channel_id=channel, participants=(SIGNER, "0x" + "12" * 20),
                                challenge_duration=60, timestamp_ms=1))
    for turn in range(1, 61):
        if turn % 5 == 0:
            try:
                store.append(make_signed(turn, "0x" + "99" * 32))
                raise SystemExit("a refused append went in")
            except InvalidTransition:
                pass
        # Its own stream: 1 + turn - 1 events before this one.
        store.append(make_signed(turn, channel), expected_version=turn)
"""


@pytest.fixture
def proxy() -> Iterator[CuttingProxy]:
    cutting = CuttingProxy(("127.0.0.1", 5432))
    yield cutting
    cutting.close()


def _through(proxy: CuttingProxy, dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    proxy.target = (str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    # No TLS: the proxy reads the protocol to find where to cut.
    return make_conninfo(dsn, host="127.0.0.1", port=proxy.port, sslmode="disable")


class Appends:
    """Eight threads' appends and what each returned."""

    def __init__(self, store: EventStore, turns: int) -> None:
        self.store = store
        self.turns = turns
        self.acknowledged: dict[str, int] = {}  # event id -> the offset returned
        self.failed_first = 0  # appends that raised StorageError before they went in
        self.wrong: list[str] = []
        self._lock = threading.Lock()

    def run(self, thread: int) -> None:
        channel = thread_channel(thread)
        for turn in range(1, self.turns + 1):
            if turn % 6 == 0:
                self._refused(turn)
            # With expected versions every third turn: such a group goes append by append.
            expected = turn if turn % 3 == 0 else None
            self._until_written(make_signed(turn, channel), expected)

    def _until_written(self, event: Any, expected: int | None) -> None:
        for _ in range(100):
            try:
                offset = self.store.append(event, expected_version=expected)
            except StorageError:
                with self._lock:
                    self.failed_first += 1
                continue
            except (InvalidTransition, ConcurrencyError) as exc:
                self.wrong.append(f"{event.event_type} turn {event.turn_num}: {exc}")
                return
            with self._lock:
                self.acknowledged[event.event_id] = offset
            return
        self.wrong.append(f"turn {event.turn_num} of {event.channel_id}: never written")

    def _refused(self, turn: int) -> None:
        try:
            self.store.append(make_signed(turn, NO_CHANNEL))
        except InvalidTransition:
            return
        except StorageError:
            return  # its group failed: nothing of it went in either (checked below)
        self.wrong.append(f"turn {turn} on a channel that does not exist went in")


class Reactions:
    """A subscriber whose callback appends a reaction to every tenth record (ADR 0065),
    retrying its own append when the connection is lost."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.acknowledged: dict[str, int] = {}
        self.wrong: list[str] = []
        store.subscribe(self, from_offset=0)

    def __call__(self, record: RecordedEvent) -> None:
        if record.offset % 10 or record.event_type == "objective-created":
            return
        reaction = ObjectiveCreated(
            objective_id="0x" + f"{record.offset:064x}",
            objective_type="DirectFund",
            timestamp_ms=record.offset,
        )
        for _ in range(100):
            try:
                self.acknowledged[reaction.event_id] = self.store.append(reaction)
                return
            except StorageError:
                continue
        self.wrong.append(f"the reaction to offset {record.offset} was never written")


def _cut_at_every_point(proxy: CuttingProxy, done: threading.Event) -> None:
    point = 0
    while not done.is_set():
        proxy.arm(*CUT_POINTS[point % len(CUT_POINTS)])
        if proxy.cut.wait(1.0):
            point += 1
        done.wait(0.005)
    proxy.disarm()


def _run(appends: Appends, proxy: CuttingProxy) -> None:
    done = threading.Event()
    cutter = threading.Thread(target=_cut_at_every_point, args=(proxy, done), daemon=True)
    threads = [
        threading.Thread(target=appends.run, args=(thread,), daemon=True)
        for thread in range(THREADS)
    ]
    cutter.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive(), "an appending thread never returned (a hang)"
    done.set()
    cutter.join(DEADLINE)


def _assert_agrees_with_the_log(store: EventStore, appends: Appends, seen: list[int]) -> None:
    assert appends.wrong == []
    records = list(store.read_from(0))
    assert [record.offset for record in records] == list(range(len(records)))
    where = {record.event_id: record.offset for record in records}
    assert len(where) == len(records), "an event is in the log twice"
    wrong = {i: (o, where.get(i)) for i, o in appends.acknowledged.items() if where.get(i) != o}
    assert wrong == {}, "acknowledged offsets that do not hold their event"
    assert all(getattr(record.event, "channel_id", None) != NO_CHANNEL for record in records)
    assert store.verify() == len(records) == len(store)
    store.refresh()
    assert seen == list(range(len(records))), "subscribers: every record once, in order"
    for thread in range(THREADS):
        state = store.state("channel", thread_channel(thread))
        assert state.latest_turn == appends.turns
        assert store.stream_version(thread_channel(thread)) == appends.turns + 1


def _open(dsn: str, schema: str) -> tuple[EventStore, list[int]]:
    backend = PostgresBackend(dsn=dsn, schema=schema, lock_timeout=10.0, pool_timeout=10.0)
    store = EventStore(backend)
    seen: list[int] = []
    store.subscribe(lambda record: seen.append(record.offset))
    store.append_batch(thread_channels_created(THREADS))
    return store, seen


def test_eight_threads_lose_the_connection_at_every_point_of_a_group(
    postgres_dsn: str, schema: str, proxy: CuttingProxy
) -> None:
    store, seen = _open(_through(proxy, postgres_dsn), schema)
    with store:
        reactions = Reactions(store)
        appends = Appends(store, turns=60)
        _run(appends, proxy)
        assert proxy.cuts >= len(CUT_POINTS), "every point was cut at least once"
        assert appends.failed_first > 0
        appends.acknowledged.update(reactions.acknowledged)
        appends.wrong.extend(reactions.wrong)
        _assert_agrees_with_the_log(store, appends, seen)
        reacted_to = {
            record.offset
            for record in store.read_from(0)
            if record.offset % 10 == 0 and record.event_type != "objective-created"
        }
        reactions_to = {
            int(record.event.objective_id, 16)
            for record in store.read_from(0)
            if isinstance(record.event, ObjectiveCreated)
        }
        assert reactions_to == reacted_to, "every reaction once"


def test_other_processes_append_while_one_loses_its_connection(
    postgres_dsn: str, schema: str, proxy: CuttingProxy, request: pytest.FixtureRequest
) -> None:
    store, seen = _open(_through(proxy, postgres_dsn), schema)
    samples = str(request.config.rootpath / "tests")
    with store:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, postgres_dsn, schema, byte, samples],
                stderr=subprocess.PIPE,
            )
            for byte in ("a1", "a2")
        ]
        appends = Appends(store, turns=40)
        _run(appends, proxy)
        for child in children:
            _, errors = child.communicate(timeout=DEADLINE)
            assert child.returncode == 0, errors.decode()
        _assert_agrees_with_the_log(store, appends, seen)
        for byte in ("a1", "a2"):
            assert store.state("channel", "0x" + byte * 32).latest_turn == 60


def test_an_append_while_the_server_is_away_fails_after_pool_timeout_once(
    postgres_dsn: str, schema: str, proxy: CuttingProxy
) -> None:
    """ADR 0041: it fails after pool_timeout. A write that never got a connection
    committed nothing, so the store does not then wait as long again to read the head
    (ADR 0042's reconciliation is for a transaction that opened)."""
    backend = PostgresBackend(
        dsn=_through(proxy, postgres_dsn), schema=schema, pool_timeout=1.0, connect_timeout=1.0
    )
    with EventStore(backend) as store:
        store.append(
            ChannelCreated(
                channel_id=thread_channel(0),
                participants=(SIGNER, "0x" + "12" * 20),
                challenge_duration=60,
                timestamp_ms=1,
            )
        )
        proxy.close()  # the server gone, as the client sees it
        started = time.monotonic()
        with pytest.raises(StorageError, match="cannot append"):
            store.append(make_signed(1, thread_channel(0)))
        assert time.monotonic() - started < 1.8  # before: about twice pool_timeout
