"""A log that lost records a running store folded, and in which another process appended
in their place before the store looked: its length says nothing (as long as before, or
longer), its chain hashes do. The store notices at its next write or refresh, folds its
state again from the log and hands subscribers the records from where the log and what it
folded part; a durable consumer's runner goes back to its stored position (ADR 0047)."""

from __future__ import annotations

import logging
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.bus.read_model import ChannelReadModel
from chanlog.folded_chain import CATCH_UP_MARK_EVERY, MARKS, OLDER_MARKS, FoldedChain
from chanlog.hashing import chain_next
from chanlog.records import PositionMove
from chanlog.workload import Workload
from core.lost_records import Mirror, backup, restore

WORKLOAD = Workload(channels=4, turns=8, seed=47)
EVENTS = WORKLOAD.events()
CHANNELS = sorted(plan.channel_id for plan in WORKLOAD.plans)
OTHER = Workload(channels=2, turns=12, seed=48)  # what another process appends meanwhile
OTHERS = OTHER.events()
KEPT = 25
FOLDED = 30


def _states(store: chanlog.EventStore) -> list[object]:
    channels = CHANNELS + sorted(plan.channel_id for plan in OTHER.plans)
    return [_state_or_none(store, channel) for channel in channels]


def _state_or_none(store: chanlog.EventStore, channel: str) -> object:
    try:
        return store.state("channel", channel)
    except chanlog.NotFound:
        return None


def _lose_and_replace(backend: MemoryBackend, kept: int, others: list[chanlog.Event]) -> None:
    """The log loses its records from ``kept`` on; another process then appends ``others``."""
    restore(backend, backup(backend, kept))
    with chanlog.EventStore(backend) as other:
        other.append_batch(others)


def _node(store: chanlog.EventStore, delivered: list[int]) -> None:
    """A node's life up to FOLDED records, a commit each past the first 20."""
    store.subscribe(lambda record: delivered.append(record.offset))
    store.append_batch(EVENTS[:20])
    for event in EVENTS[20:FOLDED]:
        store.append(event)


@pytest.mark.parametrize("replaced", [FOLDED - KEPT, FOLDED - KEPT + 7])
@pytest.mark.parametrize("noticed_by", ["refresh", "append"])
def test_a_store_notices_records_others_appended_in_place_of_lost_ones(
    replaced: int, noticed_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend) as store:
        delivered: list[int] = []
        _node(store, delivered)
        others = OTHERS[:replaced]  # as long a log as before, or longer
        _lose_and_replace(backend, KEPT, others)
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            if noticed_by == "refresh":
                assert store.refresh() == KEPT + replaced
            else:
                assert store.append(OTHERS[replaced]) == KEPT + replaced
        [said] = [r.getMessage() for r in caplog.records if r.name == "chanlog.store"]
        assert f"its record at offset {FOLDED - 1} is another" in said
        assert f"from offset {KEPT} on at the latest" in said
        assert f"handed the records from offset {KEPT} on again" in said
        with chanlog.EventStore(backend) as replayed:
            assert _states(store) == _states(replayed)
        for event in EVENTS:  # what was lost, from its sources again
            store.append(event)
        assert delivered == list(range(FOLDED)) + list(range(KEPT, len(store)))
        assert [r.event_id for r in store.read_range(KEPT, KEPT + replaced)] == [
            e.event_id for e in others
        ]
        assert store.verify() == len(store)
        with chanlog.EventStore(backend) as replayed:
            assert _states(store) == _states(replayed)


def test_a_parting_older_than_every_kept_end_hands_subscribers_the_whole_log_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A log that lost every record before others appended to it: no kept end places the
    parting, and subscribers are handed all again."""
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        delivered: list[int] = []
        store.subscribe(lambda record: delivered.append(record.offset))
        store.append_batch(EVENTS[:20])
        store.append(EVENTS[20])
        restore(backend, backup(backend, 0))
        with chanlog.EventStore(backend, projections=[]) as other:
            other.append_batch(OTHERS)
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            store.refresh()
        assert "handed the records from offset 0 on again" in caplog.text
        store.append(EVENTS[0])  # the subscribers are handed what they missed first
        assert delivered == [*range(21), *range(len(store))]


@pytest.mark.parametrize("written_by", ["itself", "another store"])
@pytest.mark.parametrize("parted", [150, 1_000, 2_500, 2_990])
def test_a_parting_far_back_in_a_long_life_is_handed_again_from_near_it(
    parted: int, written_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that wrote for long keeps thinned chain hashes of its older writes, and one
    that opened on a long log keeps some of its first fold's: a log that parted thousands
    of records back (a failover to a replica minutes behind) is handed to subscribers again
    from a kept end at most the parting's age before it, not from 0 (before: from 0 once
    the parting was more than 64 writes back, or before the store opened)."""
    events = Workload(channels=40, turns=80, seed=49).events()[:3_000]
    backend = MemoryBackend()
    delivered: list[int] = []
    if written_by == "another store":
        with chanlog.EventStore(backend, projections=[]) as writer:
            writer.append_batch(events)
    # the opener folds the log (default projections): a store that neither folds nor has
    # subscribers when it opens reads nothing, and has nobody to hand records to again
    projections: list[str] | None = [] if written_by == "itself" else None
    with chanlog.EventStore(backend, projections=projections) as store:
        store.subscribe(lambda record: delivered.append(record.offset))
        if written_by == "itself":
            for event in events:
                store.append(event)
        else:
            store.refresh()
            delivered.extend(range(len(events)))  # folded before it subscribed
        restore(backend, backup(backend, parted))
        with chanlog.EventStore(backend, projections=[]) as other:
            other.append_batch(OTHERS)
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            store.refresh()
        rewound = int(caplog.text.split("handed the records from offset ")[1].split()[0])
        reach = len(events) - parted  # the parting's age
        if written_by == "another store":  # the first fold kept an end every so often
            reach = max(reach, CATCH_UP_MARK_EVERY)
        assert parted - reach <= rewound <= parted
        assert rewound > 0
        store.append(OTHER.events()[0])  # known: nothing is delivered yet
        store.append(events[parted])  # the subscribers are handed what they missed first
        assert delivered == list(range(len(events))) + list(range(rewound, len(store)))


def test_a_record_that_does_not_link_is_named_and_folded_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a parting: the record this store folded last is still there, but the next one's
    chain hash does not follow it (the log was changed outside chanlog). The store says so
    and folds on; `chanlog verify` is the judge."""
    backend = MemoryBackend()
    with chanlog.EventStore(backend) as store:
        delivered: list[int] = []
        _node(store, delivered)
        with chanlog.EventStore(backend) as other:
            other.append_batch(EVENTS[FOLDED:40])
        backend._chains[FOLDED * 32 : FOLDED * 32 + 32] = bytes(32)
        with caplog.at_level(logging.ERROR, logger="chanlog.store"):
            assert store.refresh() == 40
        assert f"offset {FOLDED}: the log's record does not link" in caplog.text
        assert delivered == list(range(40))
        with pytest.raises(chanlog.IntegrityError):
            store.verify()


def test_a_store_without_readers_takes_the_log_as_it_is() -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        for event in EVENTS[:FOLDED]:
            store.append(event)
        _lose_and_replace(backend, KEPT, OTHERS[:5])
        assert store.append(EVENTS[FOLDED]) == FOLDED
        assert store.verify() == FOLDED + 1


def test_a_runner_goes_back_to_its_stored_position_or_refuses_for_a_handler_that_keeps_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[:FOLDED])
        seen: list[str] = []
        plain = store.bus.consumer("plain", lambda record: seen.append(record.event_id))
        mirror = Mirror()
        outside = store.bus.consumer("outside", mirror)
        assert plain.drain() == outside.drain() == FOLDED
        before = [record.event_id for record in store.read_range(0, FOLDED)]
        restore(backend, backup(backend, KEPT))
        for runner in (plain, outside):  # their rows as the backup holds them
            backend.ensure_consumer(runner.name, 0, ["chanlog.>"])
            backend.acquire_lease(runner.name, runner.holder, 30)
            backend.move_consumer(PositionMove(runner.name, runner.holder, 20, handled=20))
        with chanlog.EventStore(backend, projections=[]) as other:
            other.append_batch(OTHERS[:10])  # the log grows past where the runners are
        store.refresh()
        with caplog.at_level(logging.ERROR, logger="chanlog.bus"):
            plain.drain()
        assert f"record at offset {FOLDED - 1} is not the one this runner examined" in caplog.text
        assert "going on from 20" in caplog.text
        log = [record.event_id for record in store.read_range(0, len(store))]
        assert seen == before + log[20:]  # the replacements handled, none skipped
        with pytest.raises(chanlog.IntegrityError, match="rebuild what it feeds") as refused:
            outside.run_once()
        assert refused.value.offset == 20
        assert f"the log's record at offset {FOLDED - 1} is not the one it was handed" in str(
            refused.value
        )
        assert "chanlog consumers reset outside --to 20" in str(refused.value)
        assert mirror.applied == list(range(FOLDED))
        outside.close()
        plain.close()
        assert store.bus.consumers.state("outside").position == 20


def _chain(ids: list[bytes]) -> list[bytes]:
    hashes, previous = [], bytes(32)
    for event_id in ids:
        previous = chain_next(previous, event_id)
        hashes.append(previous)
    return hashes


@given(
    length=st.integers(1, 500),
    data=st.data(),
)
def test_the_shared_prefix_is_the_newest_kept_end_the_log_still_has(
    length: int, data: st.DataObject
) -> None:
    """Whatever the ends kept and wherever the log parted, ``shared`` is one past the
    newest end the log still has, and asks the log about a few of them only."""
    ours = _chain([offset.to_bytes(32, "big") for offset in range(length)])
    parted = data.draw(st.integers(0, length), label="parted")
    log_length = data.draw(st.integers(0, length + 20), label="log length")
    theirs = ours[:parted] + _chain([b"x" * 32] * length)[parted:log_length]
    theirs = theirs[:log_length]
    ends = sorted(set(data.draw(st.lists(st.integers(0, length - 1), max_size=5 * MARKS))))
    chain = FoldedChain()
    for offset in ends:
        chain.passed(offset, ours[offset])
    asked: list[int] = []

    def chain_at(offset: int) -> bytes | None:
        asked.append(offset)
        return theirs[offset] if offset < len(theirs) else None

    kept = chain.kept()
    assert set(ends[-MARKS:]) <= set(kept) <= set(ends)
    assert len(kept) <= 2 * MARKS + OLDER_MARKS
    still = [o for o in kept if o < len(theirs) and theirs[o] == ours[o]]
    assert chain.shared(chain_at) == (still[-1] + 1 if still else 0)
    assert len(asked) <= len(kept).bit_length()


def test_a_read_model_started_after_others_took_the_offsets_it_applied_refuses(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """The node restarted after the loss, and the log grew past the read model's offset
    meanwhile: resuming from it would take the records now at the offsets it applied for
    ones it had. The read model checks, when it binds, that the log still holds the record
    it applied last."""
    backend = MemoryBackend()
    path = f"{tmp_path}/read-model.sqlite"
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(EVENTS[:FOLDED])
        with store.bus.consumer("latest", ChannelReadModel(path=path)) as runner:
            assert runner.drain() == FOLDED
    restore(backend, backup(backend, KEPT))
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch(OTHERS[:10])  # others take offsets 25 to 34
        runner = store.bus.consumer("latest", ChannelReadModel(path=path))
        with pytest.raises(chanlog.IntegrityError, match="rebuild the read model") as refused:
            runner.start()
        assert refused.value.offset == FOLDED - 1
        assert "chanlog consumers reset latest --to 0" in str(refused.value)
        assert not runner.started
        runner.close()
        fresh = store.bus.consumer("fresh", ChannelReadModel(path=f"{tmp_path}/fresh.sqlite"))
        with fresh:  # a read model of the log as it is binds again after its own restart
            fresh.drain()
        again = store.bus.consumer("fresh", ChannelReadModel(path=f"{tmp_path}/fresh.sqlite"))
        with again:
            assert again.start()


def test_a_read_model_written_before_it_kept_chain_hashes_is_taken_as_it_is(
    tmp_path: pytest.TempPathFactory,
) -> None:
    path = f"{tmp_path}/old.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE tracking (consumer TEXT PRIMARY KEY, next_offset INTEGER)")
        old.execute("INSERT INTO tracking VALUES ('latest', 10)")
    with chanlog.EventStore(MemoryBackend(), projections=[]) as store:
        store.append_batch(EVENTS[:FOLDED])
        with store.bus.consumer("latest", ChannelReadModel(path=path)) as runner:
            assert runner.drain() == FOLDED - 10  # from its own offset, unchecked
        with sqlite3.connect(path) as kept:
            [(chain_hash,)] = kept.execute("SELECT chain_hash FROM tracking").fetchall()
        [last] = store.read_range(FOLDED - 1, FOLDED)
        assert "0x" + chain_hash.hex() == last.chain_hash
