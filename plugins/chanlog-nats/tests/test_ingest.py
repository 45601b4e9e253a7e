"""The ``nats`` ingest source: a replica fed from a node's relay ends with the node's
offsets and chain head; bad messages are parked with their reason and never appended;
redeliveries are no-ops (issue 16, "done when")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chanlog_nats import NatsIngest, NatsRelay, headers_of
from chanlog_nats.pull import Puller
from nats.js.api import AckPolicy, ConsumerConfig

from chanlog import EventStore
from chanlog.bus.ingest import ingest_consumer_name
from chanlog.bus.subjects import subject_of
from chanlog.errors import LeaseHeld, StorageError
from chanlog.events import ObjectiveApproved, ObjectiveCreated
from chanlog.testing import FlakyBackend, sample_events
from chanlog.testing.events import bytes32_of
from chanlog.testing.flaky import WriteStage

pytestmark = pytest.mark.nats


class Ingesting:
    """An ingest running on a thread into ``replica``."""

    def __init__(self, replica: EventStore, **options: Any) -> None:
        self.replica = replica
        self.ingest = NatsIngest(name=options.pop("name", "replica"), **options)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.ingest.run(self.replica, self.stop)
        except BaseException as exc:
            self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def ingesting(nats_url: str, streams: Any) -> Iterator[Callable[..., Ingesting]]:
    """Starts ingests; they are stopped before the streams are deleted."""
    del streams
    started: list[Ingesting] = []

    def start(replica: EventStore, stream: str, **options: Any) -> Ingesting:
        options.setdefault("durable", "replica")
        run = Ingesting(replica, stream=stream, url=nats_url, fetch_timeout=0.3, **options)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.thread.is_alive():
            run.close()


def _relay(store: EventStore, streams: Any, stream: str, name: str = "relay") -> None:
    """Relay the store's log to ``stream``, on subjects of its own."""
    relay = NatsRelay(
        stream=stream, url=streams.url, storage="memory", prefix=streams.prefix(stream)
    )
    with store.bus.consumer(name, relay) as runner:
        runner.drain()
        assert relay.settle(30)


def _relayed(streams: Any, count: int) -> tuple[EventStore, str]:
    """A node of ``count`` sample events (unvalidated) and a stream its relay filled."""
    node = EventStore(projections=[])
    node.append_batch(sample_events(count))
    stream = streams.name()
    _relay(node, streams, stream)
    return node, stream


def _one_record_off(streams: Any) -> tuple[EventStore, str]:
    """A stream of 5 records, and a replica holding one record of its own: one off."""
    _, stream = _relayed(streams, 5)
    replica = EventStore(projections=[])
    replica.append_batch(sample_events(1, salt="own"))
    return replica, stream


def _channel_events() -> list[Any]:
    """Events the built-in projections accept (so the replica validates them too)."""
    events: list[Any] = []
    for number in range(30):
        objective = bytes32_of(f"objective:{number}")
        events.append(
            ObjectiveCreated(
                objective_id=objective, objective_type="DirectFund", timestamp_ms=number
            )
        )
        events.append(ObjectiveApproved(objective_id=objective, timestamp_ms=number))
    return events


def test_a_replica_ends_with_the_nodes_offsets_and_chain_head(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    node = EventStore()  # validated, like the replica
    node.append_batch(_channel_events())
    node.snapshot()  # a snapshot-created record travels as-is
    stream = streams.name()
    _relay(node, streams, stream)
    replica = EventStore(snapshot_policy="never")
    run = ingesting(replica, stream)
    wait_until(lambda: len(replica) == len(node), 60, "the replica to catch up")
    assert replica.backend.head() == node.backend.head()
    replica.verify()
    assert [r.event_id for r in replica.read_range(0, len(node))] == [
        r.event_id for r in node.read_range(0, len(node))
    ]
    assert run.ingest.stats()["appended"] == len(node)
    # More on the node later: the same ingest follows.
    node.append_batch(
        [
            ObjectiveCreated(
                objective_id=bytes32_of("late"), objective_type="DirectFund", timestamp_ms=1
            )
        ]
    )
    _relay(node, streams, stream)
    wait_until(lambda: len(replica) == len(node), 60, "the replica to follow")
    assert replica.backend.head() == node.backend.head()
    run.close()
    assert run.errors == []
    state = replica.bus.consumers.state(ingest_consumer_name("replica"))
    assert state.position == len(node)
    assert state.parked == 0


def test_a_body_that_does_not_match_its_msg_id_is_parked_and_never_appended(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    node, stream = _relayed(streams, 10)
    replica = EventStore(projections=[])
    run = ingesting(replica, stream)
    wait_until(lambda: len(replica) == 10, 60, "the replica to catch up")
    head = replica.backend.head()
    # A message claiming the next record, whose body is another event.
    other = sample_events(1, start=10)[0]
    node.append(other)
    record = next(iter(node.read_range(10, 11)))
    tampered = sample_events(1, start=11)[0]
    answer = streams.publish(
        subject_of(record, streams.prefix(stream)), tampered.canonical_json(), headers_of(record)
    )
    assert "seq" in answer
    wait_until(lambda: run.ingest.stats()["parked"] == 1, 30, "the message to be parked")
    assert replica.backend.head() == head
    parked = replica.bus.consumers.parked(ingest_consumer_name("replica"))
    assert len(parked) == 1
    assert parked[0].offset == answer["seq"]
    assert parked[0].event_id == record.event_id
    assert parked[0].event_type == "message-sent"
    assert "event id mismatch" in parked[0].error
    assert tampered.event_id in parked[0].error
    run.close()
    assert run.errors == []


def test_an_event_the_replicas_rules_refuse_is_parked(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    node = EventStore(projections=[])  # the node does not validate; the replica does
    node.append_batch(sample_events(2))  # message-sent for objectives nobody created
    stream = streams.name()
    _relay(node, streams, stream)
    replica = EventStore()
    run = ingesting(replica, stream, mirror=False)
    wait_until(lambda: run.ingest.stats()["parked"] == 2, 30, "both to be parked")
    assert len(replica) == 0
    errors = [p.error for p in replica.bus.consumers.parked(ingest_consumer_name("replica"))]
    assert all(error.startswith("refused by the store: ") for error in errors)
    run.close()


def test_messages_delivered_again_are_not_appended_twice(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    node, stream = _relayed(streams, 50)
    replica = EventStore(projections=[])
    first = ingesting(replica, stream, durable="one", name="one")
    wait_until(lambda: len(replica) == 50, 60, "the replica to catch up")
    first.close()
    # Another durable consumer replays the whole stream into the same replica.
    second = ingesting(replica, stream, durable="two", name="two")
    wait_until(lambda: second.ingest.stats()["duplicates"] == 50, 60, "the replay")
    assert len(replica) == 50
    assert replica.backend.head() == node.backend.head()
    second.close()


def test_a_mirror_waits_for_a_missing_offset(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    replica, stream = _one_record_off(streams)
    run = ingesting(replica, stream)
    wait_until(lambda: run.ingest.stats()["parked"] >= 1, 30, "offset 0 to be parked")
    parked = replica.bus.consumers.parked(ingest_consumer_name("replica"))
    assert "already another record in this replica" in parked[0].error
    wait_until(
        lambda: "waiting for what comes before" in (run.ingest.stats()["last_error"] or ""),
        30,
        "the mirror to wait",
    )
    assert len(replica) == 1
    run.close()


def test_a_missing_stream_is_retried_and_a_backend_without_consumers_refused(
    streams: Any, ingesting: Callable[..., Ingesting], wait_until: Callable[..., None]
) -> None:
    replica = EventStore(projections=[])
    run = ingesting(replica, streams.name())  # a name nobody made a stream of
    wait_until(
        lambda: "no JetStream stream" in (run.ingest.stats()["last_error"] or ""),
        30,
        "the missing stream to be reported",
    )
    run.close()

    class NoConsumers:
        name = "bare"

    class Store:
        backend = NoConsumers()

    with pytest.raises(StorageError, match="keeps no consumers"):
        NatsIngest(name="x", stream="S", durable="d").run(Store(), threading.Event())  # type: ignore[arg-type]


@pytest.mark.parametrize("stage", ["begin", "commit", "acknowledgement"])
def test_a_replica_store_failing_for_a_while_is_retried(
    stage: WriteStage,
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """Writes that fail to begin, or whose commit is refused, are retried; one whose commit
    landed although it was reported as failed is not appended twice."""
    node, stream = _relayed(streams, 300)
    backend = FlakyBackend()
    replica = EventStore(backend, projections=[])
    armed = 1 if stage == "acknowledgement" else 3  # a landed batch is not written again
    backend.fail_writes(armed, at=stage)
    run = ingesting(replica, stream)
    if stage != "acknowledgement":  # (one failure: its 0.1 s of retrying is too short to see)
        # 0.1 + 0.2 + 0.4 s of backoff: chanlog run's table says "retrying" meanwhile.
        wait_until(lambda: run.ingest.stats()["retrying"], 30, "the ingest to be retrying")
    wait_until(lambda: len(replica) == len(node), 60, "the replica to catch up")
    assert backend.writes_to_fail == 0
    assert backend.failed_writes == armed
    assert replica.backend.head() == node.backend.head()
    assert run.thread.is_alive()
    assert run.ingest.stats()["last_error"] == f"StorageError: {backend.message}"
    assert run.ingest.stats()["retrying"] is False
    run.close()
    assert run.errors == []
    assert run.ingest.stats()["parked"] == 0


def test_a_mirror_behind_what_its_consumer_acknowledged_takes_delivery_again(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """A replica restored from an older backup under its durable consumer: the messages
    it lost were acknowledged, so JetStream never delivers them again by itself. At the
    next message the mirror sees the gap and takes delivery again from the message that
    holds its next offset (ADR 0046), instead of waiting for ever."""
    node, stream = _relayed(streams, 300)
    first = EventStore(projections=[])
    run = ingesting(first, stream, ack_wait=1)
    wait_until(lambda: len(first) == 300, 60, "the replica to catch up")
    run.close()
    restored = EventStore(projections=[])  # the backup: the first 100 records
    restored.append_batch([record.event for record in node.read_range(0, 100)])
    run = ingesting(restored, stream, ack_wait=1)
    node.append_batch(sample_events(5, salt="later"))
    _relay(node, streams, stream)
    wait_until(lambda: len(restored) == len(node), 60, "the mirror to take delivery again")
    assert restored.backend.head() == node.backend.head()
    run.close()
    assert run.errors == []
    assert run.ingest.stats()["parked"] == 0


def test_a_message_parked_again_after_a_take_over_counts_once(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """A mirror one record off parks what it cannot place and waits on the rest; each take
    over from where it needs (once per ack wait, ADR 0046) delivers the parked message
    again. It is parked again (its record replaced), and counted once."""
    replica, stream = _one_record_off(streams)
    run = ingesting(replica, stream, ack_wait=0.2)
    parked = replica.bus.consumers.parked
    wait_until(lambda: len(parked(ingest_consumer_name("replica"))) == 2, 30, "two parked")
    time.sleep(1.0)  # several takes over, each delivering the parked message again
    run.close()
    rows = parked(ingest_consumer_name("replica"))
    assert [row.offset for row in rows] == [1, 2]
    assert run.ingest.stats()["parked"] == len(rows)
    assert len(replica) == 1


def _delete_stream(streams: Any, stream: str) -> None:
    async def delete(js: Any) -> None:
        await js.delete_stream(stream)

    streams.call(delete)


def _delete_consumer(streams: Any, stream: str, durable: str) -> None:
    async def delete(js: Any) -> None:
        await js.delete_consumer(stream, durable)

    streams.call(delete)


def test_a_pull_from_a_missing_consumer_raises_a_doubt_an_idle_ones_does_not(
    streams: Any,
) -> None:
    """A pull from a consumer that does not exist gets no answer at all, not even "no
    responders": the puller says it is in doubt, for the ingest to ask the server. An idle
    consumer's pull ends with a status ("request expired"): no doubt, nothing to ask."""
    stream = streams.name()
    streams.add(stream, [f"{streams.prefix(stream)}.>"])

    async def pull(js: Any) -> tuple[str | None, str | None]:
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="idle", ack_policy=AckPolicy.EXPLICIT)
        )
        idle, missing = Puller(js._nc, stream, "idle"), Puller(js._nc, stream, "missing")
        await idle.start()
        await missing.start()
        assert await idle.fetch(10, 0.2) == []
        assert await missing.fetch(10, 0.2) == []
        return idle.in_doubt, missing.in_doubt

    assert streams.call(pull) == (None, "a pull got no answer at all")


def test_a_stream_deleted_and_created_again_is_followed(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """The node's stream is deleted (the durable consumer with it) and created again, its
    relay reset to 0 publishing the log again. A pull from a consumer that no longer exists
    gets no answer at all, which once looked like an idle stream: the replica stopped for
    good, saying lag 0 and no error. Now the ingest says the stream is missing, creates its
    consumer again once the stream is back, from the message that holds the replica's next
    offset, and follows."""
    node = EventStore(projections=[])
    node.append_batch(sample_events(10))
    stream = streams.name()
    _relay(node, streams, stream)
    replica = EventStore(projections=[])
    run = ingesting(replica, stream)
    wait_until(lambda: len(replica) == 10, 60, "the replica to catch up")
    _delete_stream(streams, stream)
    wait_until(
        lambda: f"no JetStream stream named {stream}" in (run.ingest.stats()["last_error"] or ""),
        30,
        "the missing stream to be reported",
    )
    assert run.ingest.stats()["lag"] is None  # not 0: nothing is known to be delivered
    node.bus.consumers.reset("relay", 0)
    node.append_batch(sample_events(5, start=10))
    _relay(node, streams, stream)
    wait_until(lambda: len(replica) == 15, 30, "the replica to follow the new stream")
    assert replica.backend.head() == node.backend.head()
    # Taken from the replica's position: the ten records it held did not come again.
    assert run.ingest.stats()["duplicates"] == 0
    assert run.ingest.stats()["appended"] == 15
    run.close()
    assert run.errors == []


def test_a_durable_consumer_deleted_under_the_ingest_is_created_again(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """Only the durable consumer is deleted (by an operator, or a stream's limits): the
    ingest creates it again from the replica's position and follows what comes next."""
    node = EventStore(projections=[])
    node.append_batch(sample_events(10))
    stream = streams.name()
    _relay(node, streams, stream)
    replica = EventStore(projections=[])
    run = ingesting(replica, stream)
    wait_until(lambda: len(replica) == 10, 60, "the replica to catch up")
    _delete_consumer(streams, stream, "replica")
    wait_until(
        lambda: "durable consumer replica" in (run.ingest.stats()["last_error"] or ""),
        30,
        "the missing consumer to be reported",
    )
    node.append_batch(sample_events(5, start=10))
    _relay(node, streams, stream)
    wait_until(lambda: len(replica) == 15, 30, "the replica to follow")
    assert replica.backend.head() == node.backend.head()
    assert run.ingest.stats()["duplicates"] == 0
    run.close()
    assert run.errors == []


def test_an_ingest_that_lost_its_lease_in_a_storage_outage_waits_for_it(
    streams: Any,
    ingesting: Callable[..., Ingesting],
    wait_until: Callable[..., None],
) -> None:
    """The replica's store fails for longer than the lease's time to live while a second
    ingest of the same name waits: the second takes the lease over. The first, its store
    back, finds the lease another's; it used to die of ``LeaseHeld`` (its thread gone, the
    replica fed by nobody once the second stops). Now it waits for the lease, as a
    consumer's runner does, and takes over when the second stops."""
    node = EventStore(projections=[])
    node.append_batch(sample_events(20))
    stream = streams.name()
    _relay(node, streams, stream)
    backend = FlakyBackend()
    replica = EventStore(backend, projections=[])
    first = ingesting(replica, stream, lease_ttl=1)
    wait_until(lambda: len(replica) == 20, 60, "the replica to catch up")
    second = ingesting(replica, stream, lease_ttl=1)  # waits for the lease
    # 0.1 + 0.2 + ... + 1.6 s of retrying: the first's lease runs out meanwhile.
    backend.fail_writes(6)
    node.append_batch(sample_events(10, start=20))
    _relay(node, streams, stream)
    wait_until(lambda: backend.writes_to_fail == 0, 60, "the outage to end")
    wait_until(lambda: len(replica) == 30, 60, "the replica to catch up again")
    wait_until(
        lambda: first.errors or "LeaseHeld" in (first.ingest.stats()["last_error"] or ""),
        30,
        "the first ingest to find its lease lost",
    )
    assert first.errors == []
    assert first.thread.is_alive()
    second.close()
    assert second.errors == []
    # The first takes the lease again and feeds the replica.
    node.append_batch(sample_events(5, start=30))
    _relay(node, streams, stream)
    wait_until(lambda: len(replica) == 35, 60, "the first ingest to follow again")
    assert replica.backend.head() == node.backend.head()
    first.close()
    assert first.errors == []
    assert not any(isinstance(error, LeaseHeld) for error in first.errors)
