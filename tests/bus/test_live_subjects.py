"""Live subscriptions by subject: catch-up, then live, no gap and no duplicate."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chanlog
from bus.conftest import fill
from chanlog.bus import EmbeddedBroker
from chanlog.events import ChannelCreated
from chanlog.records import RecordedEvent
from chanlog.workload import Workload, WorkloadConfig


def test_a_subscription_by_subject_catches_up_then_goes_live() -> None:
    with chanlog.EventStore() as store:
        fill(store, seed=2)
        half = len(store) // 2
        seen: list[RecordedEvent] = []
        store.subscribe(seen.append, from_offset=half, subjects=["chanlog.chain.>"])
        fill(store, seed=3)
        wanted = store.bus.subject_filter("chanlog.chain.>")
        expected = [r.offset for r in store.read_from(half) if wanted.matches(r)]
        assert [r.offset for r in seen] == expected
        assert all(store.bus.subject_of(r).startswith("chanlog.chain.") for r in seen)


def test_subjects_and_threads_appending() -> None:
    with chanlog.EventStore(projections=[]) as store:
        workloads = [Workload(WorkloadConfig(seed=seed, channels=2, turns=20)) for seed in (7, 8)]
        seen: list[int] = []
        store.subscribe(lambda r: seen.append(r.offset), subjects="chanlog.channel.*.*")

        def append(workload: Workload) -> None:
            for event in workload.events():
                store.append(event)

        threads = [threading.Thread(target=append, args=(w,)) for w in workloads]
        late: list[int] = []
        for thread in threads:
            thread.start()
        store.subscribe(lambda r: late.append(r.offset), from_offset=0, subjects="*.channel.>")
        for thread in threads:
            thread.join()
        wanted = store.bus.subject_filter("chanlog.channel.>")
        everything = [r.offset for r in store if wanted.matches(r)]
        assert late == everything  # from the start, through the catch-up, then live
        assert seen == sorted(seen) and len(seen) == len(set(seen))
        assert set(seen) <= set(everything)


def test_one_entity_by_its_subject() -> None:
    with chanlog.EventStore() as store:
        fill(store, seed=4)
        channel = next(r.event.channel_id for r in store if isinstance(r.event, ChannelCreated))
        seen: list[RecordedEvent] = []
        store.subscribe(seen.append, from_offset=0, subjects=f"chanlog.*.*.{channel.lower()}")
        assert seen
        assert {r.event.streams[0] for r in seen} == {channel.lower()}
        assert len(seen) == store.stream_version(channel)


def test_a_node_prefix_and_the_embedded_broker() -> None:
    with chanlog.EventStore(bus_prefix="node-a") as store:
        assert isinstance(store.bus.broker, EmbeddedBroker)
        assert store.bus.prefix == "node-a"
        seen: list[int] = []
        other: list[int] = []
        store.subscribe(lambda r: seen.append(r.offset), subjects="node-a.>")
        store.subscribe(lambda r: other.append(r.offset), subjects="chanlog.>")
        fill(store, seed=5, channels=1, turns=2)
        assert seen == list(range(len(store)))
        assert other == []
        assert store.bus.subject_of(next(iter(store))).startswith("node-a.objective.")


def test_a_publishing_broker_publishes_only_what_its_store_committed(tmp_path: Path) -> None:
    from chanlog.backends.sqlite import SqliteBackend
    from chanlog.plugins import PluginHost, hookimpl

    published: list[int] = []

    class Recording(EmbeddedBroker):
        name = "recording"
        publishes = True

        def publish(self, records: Sequence[RecordedEvent]) -> None:
            published.extend(record.offset for record in records)

    class Plugin:
        @hookimpl
        def chanlog_register_brokers(self, register: Any) -> None:
            register("recording", lambda *, context: Recording(context=context))

    host = PluginHost(load_entry_points=False)
    host.register(Plugin(), name="recording-broker")
    path = tmp_path / "shared.db"
    with chanlog.EventStore(SqliteBackend(path)) as other:
        fill(other, seed=1, channels=1, turns=2)
        with chanlog.EventStore(SqliteBackend(path), plugins=host, broker="recording") as node:
            seen: list[int] = []
            node.subscribe(lambda r: seen.append(r.offset), from_offset=0)
            fill(other, seed=2, channels=1, turns=2)  # committed by another writer
            theirs = len(other)
            fill(node, seed=3, channels=1, turns=2)  # catches theirs up, then commits its own
            assert seen == list(range(len(node)))  # the signal carries every record
            assert published == list(range(theirs, len(node)))  # the broker only its own
