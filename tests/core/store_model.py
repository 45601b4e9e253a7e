"""A model-based test of the store (DESIGN sections 3 and 5), shared by the backends' suites.

:class:`StoreModel` is a Hypothesis state machine that drives a store through appends (one
event, a batch, refused ones, redeliveries), a second store writing to the same log (another
process), snapshots, pruning, damage to stored snapshots, reopening, reconstruction at any
offset, reads and verify.

The model is the list of accepted events in log order, mirrored into a *reference*: a
memory store that never snapshots and keeps no checkpoint, whose entities are reconstructed
by folding from offset 0 (``StateReconstructor(use_snapshots=False)``). The store under test
must agree with it at every offset, whatever snapshots and checkpoints it starts from.

A backend's suite subclasses it with :meth:`StoreModel.open_backend` (a new handle on the
same log each call) and :attr:`StoreModel.shared` (a second store may write to the log).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chanlog import (
    ConcurrencyError,
    EventStore,
    IntegrityError,
    InvalidEvent,
    InvalidTransition,
    NotFound,
)
from chanlog.backends.base import Backend
from chanlog.backends.capabilities import ManagesSnapshots
from chanlog.backends.memory import MemoryBackend
from chanlog.codec import to_payload
from chanlog.errors import DecodeError
from chanlog.events import ChannelCreated, Event, ObjectiveApproved, SnapshotCreated
from chanlog.hashing import keccak256
from chanlog.reconstruct import StateReconstructor
from chanlog.records import StoredSnapshot
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference, encode_snapshot
from chanlog.snapshots.manager import SnapshotManager
from chanlog.workload import Workload
from chanlog_strategies import bytes32
from snapshots.upgraded_channel import channel_host

KINDS = {"channel_id": "channel", "objective_id": "objective", "message_id": "message"}
WRITERS = ("main", "other")
PROJECTION_SETS = (("channel",), ("channel", "objective"), ("messages", "objective"), ())
"""What a store reopened by :meth:`StoreModel.reopen` may fold inline besides all of them (a
node configured with fewer projections): its snapshots hold only those, restores from the
others' ignore the rest, and the kinds it does not fold are reconstructed from the log."""
DAMAGES = ("flip", "hash", "truncate", "delete", "other-state")
"""What :meth:`StoreModel.damage_snapshot` does to a stored snapshot: a bit flipped in its
bytes or in its hash, its bytes cut short, its row deleted, or a row of well-formed bytes
with a hash of their own holding the states of another offset (a row from another log, or
an editor's)."""


def entities_of(event: Event) -> Iterable[tuple[str, str]]:
    """``(kind, entity id)`` of the entities an event names."""
    for field, kind in KINDS.items():
        value = getattr(event, field, None)
        if isinstance(value, str):
            yield kind, value


class StoreModel(RuleBasedStateMachine):
    """The store against a list of accepted events and a fold from offset 0."""

    shared: ClassVar[bool] = False
    """Whether a second store may write to the same log (a shared backend)."""

    def open_backend(self) -> Backend:
        """A new handle on this run's log (the same log every call)."""
        raise NotImplementedError

    def discard_log(self) -> None:
        """Remove this run's log (after the run)."""

    def __init__(self) -> None:
        super().__init__()
        self.store: EventStore | None = None
        self.other: EventStore | None = None
        self.reference = EventStore(MemoryBackend(), snapshot_policy="never", checkpoint_every=0)
        self.cold = StateReconstructor(self.reference, use_snapshots=False)
        self.events: list[Event] = []  # the model: accepted events in log order
        self.ids: list[str] = []
        self.entities: set[tuple[str, str]] = set()
        self.script: list[Event] = []
        self.cursor = 0
        self.stale: set[str] = set()  # stores that have not seen the other's writes yet
        self.tampered = False  # a stored snapshot was damaged outside chanlog

    # -- set-up ------------------------------------------------------------------------

    @initialize(
        seed=st.integers(0, 10_000),
        n=st.integers(1, 9),
        keep=st.integers(0, 3),
        incremental=st.booleans(),
        every=st.integers(0, 3),
        prefix=st.integers(0, 40),
        chunk=st.integers(1, 8),
    )
    def configure(
        self, seed: int, n: int, keep: int, incremental: bool, every: int, prefix: int, chunk: int
    ) -> None:
        """A store, and the first ``prefix`` events of the script appended ``chunk`` at a
        time (so that runs reach snapshots and checkpoints early)."""
        workload = Workload(
            seed=seed,
            channels=3,
            turns=3,
            interleave=3,
            challenge_probability=0.5,
            reject_probability=0.2,
        )
        self.script = workload.events()
        self.options: dict[str, Any] = {
            "snapshot_policy": EveryNEvents(n=n, keep=keep, incremental=incremental),
            "checkpoint_every": every,
        }
        self.store = self._open()
        # A script may be shorter than the prefix drawn (18 events for some seeds): appending
        # nothing for ever would hang the test.
        prefix = min(prefix, len(self.script))
        while self.cursor < prefix:
            events = self._next(min(chunk, prefix - self.cursor))
            offsets = self.store.append_batch(events)
            self.cursor += len(events)
            assert offsets == self._wrote(self.store, events)

    def _open(self) -> EventStore:
        return EventStore(self.open_backend(), **self.options)

    def teardown(self) -> None:
        for store in (self.other, self.store):
            if store is not None:
                store.close()
        self.reference.close()
        self.discard_log()

    def _writer(self, which: str) -> EventStore:
        assert self.store is not None
        if which == "main" or not self.shared:
            return self.store
        if self.other is None:
            self.other = self._open()
        return self.other

    def _name(self, store: EventStore) -> str:
        return "main" if store is self.store else "other"

    # -- the model ---------------------------------------------------------------------

    def _wrote(self, store: EventStore, new: Sequence[Event]) -> list[int]:
        """Take ``new`` (just committed through ``store``, in order) into the model, with
        the ``snapshot-created`` events an automatic snapshot appended after them; return
        the offsets of ``new``."""
        start = len(self.events)
        self.stale.discard(self._name(store))
        if self.shared:
            self.stale.add("other" if store is self.store else "main")
        head = store.backend.head().length
        assert head >= start + len(new), (head, start, len(new))
        records = list(store.read_range(start, head))
        assert [r.offset for r in records] == list(range(start, head))
        assert [r.event_id for r in records[: len(new)]] == [e.event_id for e in new]
        for record in records[len(new) :]:
            # Only an automatic snapshot appends anything else, of the end of the log.
            assert isinstance(record.event, SnapshotCreated), record
            assert record.event.snapshot_offset <= record.offset
        self._accept([r.event for r in records])
        return list(range(start, start + len(new)))

    def _accept(self, events: Sequence[Event]) -> None:
        if not events:
            return
        start = len(self.events)
        assert self.reference.append_batch(list(events)) == list(range(start, start + len(events)))
        for event in events:
            self.events.append(event)
            self.ids.append(event.event_id)
            self.entities.update(entities_of(event))

    def _unchanged(self, store: EventStore, length: int) -> None:
        assert len(self.events) == length
        assert store.backend.head().length == length
        assert len(store) == length

    def _version(self, stream: str) -> int:
        return sum(1 for event in self.events if stream in event.streams)

    def _next(self, count: int) -> list[Event]:
        return self.script[self.cursor : self.cursor + count]

    # -- appends -----------------------------------------------------------------------

    @precondition(lambda self: self.cursor < len(self.script))
    @rule(writer=st.sampled_from(WRITERS), versioned=st.booleans())
    def append_one(self, writer: str, versioned: bool) -> None:
        store = self._writer(writer)
        event = self.script[self.cursor]
        expected = self._version(event.streams[0]) if versioned else None
        offset = store.append(event, expected_version=expected)
        self.cursor += 1
        assert [offset] == self._wrote(store, [event])

    @precondition(lambda self: self.cursor < len(self.script))
    @rule(writer=st.sampled_from(WRITERS), size=st.integers(1, 8), versioned=st.booleans())
    def append_batch(self, writer: str, size: int, versioned: bool) -> None:
        store = self._writer(writer)
        events = self._next(size)
        expected = None
        if versioned:
            expected = {e.streams[0]: self._version(e.streams[0]) for e in events[:1]}
        offsets = store.append_batch(events, expected_versions=expected)
        self.cursor += len(events)
        assert offsets == self._wrote(store, events)

    @precondition(lambda self: self.events)
    @rule(writer=st.sampled_from(WRITERS), data=st.data())
    def redeliver(self, writer: str, data: st.DataObject) -> None:
        """An event already in the log: its offset, nothing written (DESIGN section 3)."""
        store = self._writer(writer)
        offset = data.draw(st.integers(0, len(self.events) - 1), label="redelivered")
        length = len(self.events)
        assert store.append(self.events[offset]) == offset
        self._unchanged(store, length)
        self.stale.discard(self._name(store))

    @precondition(lambda self: self.events)
    @rule(writer=st.sampled_from(WRITERS), data=st.data())
    def redeliver_within_a_batch(self, writer: str, data: st.DataObject) -> None:
        """Known events mixed into a batch of new ones: the known keep their offsets, only
        the new ones are written."""
        store = self._writer(writer)
        known = data.draw(
            st.lists(st.integers(0, len(self.events) - 1), min_size=1, max_size=3),
            label="known",
        )
        new = self._next(data.draw(st.integers(0, 3), label="new"))
        batch: list[Any] = list(new)
        ids = [e.event_id for e in new]
        if len(new) > 0 and data.draw(st.booleans(), label="a new one twice"):
            again = data.draw(st.integers(1, len(batch)), label="again at")
            batch.insert(again, new[0])
            ids.insert(again, new[0].event_id)
        for offset in known:
            known_event = self.events[offset]
            event: Event | dict[str, Any] = known_event
            if data.draw(st.booleans(), label="as an envelope"):
                event = {"type": known_event.event_type, "payload": to_payload(known_event)}
            at = data.draw(st.integers(0, len(batch)), label="at")
            batch.insert(at, event)
            ids.insert(at, self.ids[offset])
        offsets = store.append_batch(batch)
        self.cursor += len(new)
        written = self._wrote(store, new)
        expected = iter(written)
        by_id = {self.ids[offset]: offset for offset in known}
        for event in new:
            by_id[event.event_id] = next(expected)
        assert offsets == [by_id[event_id] for event_id in ids]

    @precondition(lambda self: self.cursor < len(self.script))
    @rule(writer=st.sampled_from(WRITERS), batch=st.booleans(), off=st.sampled_from([-1, 1, 5]))
    def refused_on_version(self, writer: str, batch: bool, off: int) -> None:
        store = self._writer(writer)
        event = self.script[self.cursor]
        stream = event.streams[0]
        actual = self._version(stream)
        wrong = actual + off if actual + off >= 0 else actual + 1
        length = len(self.events)
        events = self._next(3)

        def append() -> object:
            if batch:
                return store.append_batch(events, expected_versions={stream: wrong})
            return store.append(event, expected_version=wrong)

        with pytest.raises(ConcurrencyError) as raised:
            append()
        assert (raised.value.expected, raised.value.actual) == (wrong, actual)
        self._unchanged(store, length)
        self.stale.discard(self._name(store))

    @rule(
        writer=st.sampled_from(WRITERS),
        kind=st.sampled_from(["unknown-objective", "second-create", "undecodable"]),
        data=st.data(),
    )
    def refused_batch(self, writer: str, kind: str, data: st.DataObject) -> None:
        """A batch holding one refused event writes nothing, and says which one."""
        store = self._writer(writer)
        batch: list[Any] = list(self._next(data.draw(st.integers(0, 4), label="valid")))
        if len(self.events) > 0 and data.draw(st.booleans(), label="with a known one"):
            batch.insert(0, self.events[-1])
        bad: Any
        error: type[Exception] = InvalidTransition
        # Only the projection of the entity refuses a transition: one the store does not
        # fold accepts it (the workload's events are refused whatever the store folds).
        folded = {"unknown-objective": "objective", "second-create": "channel"}.get(kind)
        if folded is not None and store.inline_projection(folded) is None:
            kind = "undecodable"
        if kind == "unknown-objective":
            bad = ObjectiveApproved(objective_id=data.draw(bytes32), timestamp_ms=1)
        elif kind == "second-create" and any(isinstance(e, ChannelCreated) for e in self.events):
            created = next(e for e in self.events if isinstance(e, ChannelCreated))
            bad = attrs.evolve(created, timestamp_ms=created.timestamp_ms + 1)
        else:
            bad = {"type": "state-signed", "payload": {"channel_id": "0x" + "c1" * 32}}
            error = InvalidEvent
        at = data.draw(st.integers(0, len(batch)), label="bad at")
        batch.insert(at, bad)
        length = len(self.events)
        with pytest.raises(error) as raised:
            store.append_batch(batch)
        assert getattr(raised.value, "index", None) == at
        self._unchanged(store, length)
        if error is InvalidTransition:  # refused in the write transaction, after catching up
            self.stale.discard(self._name(store))

    # -- snapshots -----------------------------------------------------------------------

    @rule(writer=st.sampled_from(WRITERS), data=st.data())
    def snapshot(self, writer: str, data: st.DataObject) -> None:
        store = self._writer(writer)
        at = data.draw(st.none() | st.integers(0, len(self.events)), label="snapshot at")
        end = len(self.events)
        taken = store.snapshot(at)
        assert taken.offset == (end if at is None else at)
        self._wrote(store, [])
        if len(self.events) == end:
            # The same snapshot taken again (the one stored there is readable: ADR 0056):
            # its announcement, the same event, is already in the log.
            announced: Event = next(
                e
                for e in self.events
                if isinstance(e, SnapshotCreated)
                and e.snapshot_offset == taken.offset
                and e.snapshot_hash == "0x" + taken.snapshot_hash.hex()
            )
        else:
            assert len(self.events) == end + 1
            announced = self.events[end]
        assert isinstance(announced, SnapshotCreated)
        assert announced.snapshot_offset == taken.offset
        assert announced.snapshot_hash == "0x" + taken.snapshot_hash.hex()

    @rule(writer=st.sampled_from(WRITERS), keep=st.none() | st.integers(0, 3))
    def prune(self, writer: str, keep: int | None) -> None:
        store = self._writer(writer)
        length = len(self.events)
        before = _stored_offsets(store.backend)
        store.prune_snapshots(keep)
        self._unchanged(store, length)
        # What is kept stays readable: no base of a kept incremental one is pruned (ADR 0036).
        backend = store.backend
        if isinstance(backend, ManagesSnapshots):
            reader = SnapshotManager(store)  # no view cached: each base is read again
            stored = {offset for offset, _ in backend.snapshot_sizes()}
            for offset in sorted(stored):
                kept = backend.latest_snapshot(offset)
                assert kept is not None and kept.offset == offset
                if not self.tampered:
                    reader.open(kept)
                elif (base := _base_of(kept)) is not None:
                    # A damaged base may leave it unreadable, but pruning kept its base.
                    assert base in stored or base not in before, (offset, base)

    @precondition(lambda self: isinstance(self._writer("main").backend, ManagesSnapshots))
    @rule(how=st.sampled_from(DAMAGES), data=st.data())
    def damage_snapshot(self, how: str, data: st.DataObject) -> None:
        """A stored snapshot changed outside chanlog: reconstruction must not be misled by it
        (it falls back to an older snapshot or to the log), a store must still open, and
        ``verify`` reports it until a snapshot taken again there replaces it."""
        backend = self._writer("main").backend
        assert isinstance(backend, ManagesSnapshots)
        stored = sorted(_stored_offsets(backend))
        if how == "other-state":
            at = data.draw(st.integers(0, len(self.events)), label="row at")
            states = data.draw(st.integers(0, len(self.events)), label="states of")
            row = encode_snapshot(at, self.reference.snapshots.projections_at(states))
            backend.save_snapshot(row)
            self.tampered = True
            return
        if not stored:
            return
        at = data.draw(st.sampled_from(stored), label="damaged")
        self.tampered = True
        if how == "delete":
            backend.delete_snapshots([at])
            return
        snapshot = backend.latest_snapshot(at)
        assert snapshot is not None and snapshot.offset == at
        data_bytes, digest = bytearray(snapshot.data), bytearray(snapshot.snapshot_hash)
        if not data_bytes and how != "hash":
            return  # cut to nothing already
        if how == "flip":
            position = data.draw(st.integers(0, len(data_bytes) - 1), label="byte")
            data_bytes[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif how == "hash":
            digest[data.draw(st.integers(0, 31), label="hash byte")] ^= 1
        else:
            del data_bytes[data.draw(st.integers(0, len(data_bytes) - 1), label="cut at") :]
        backend.save_snapshot(
            StoredSnapshot(at, dict(snapshot.versions), bytes(data_bytes), bytes(digest))
        )

    def _snapshots_as_announced(self, backend: Backend) -> bool:
        """Whether every stored snapshot is what its latest ``snapshot-created`` event
        announced (what ``verify`` checks of snapshots)."""
        if not isinstance(backend, ManagesSnapshots):
            return True
        announced = {
            e.snapshot_offset: e.snapshot_hash
            for e in self.events
            if isinstance(e, SnapshotCreated)
        }
        for offset in _stored_offsets(backend):
            snapshot = backend.latest_snapshot(offset)
            assert snapshot is not None
            expected = announced.get(offset)
            actual = "0x" + snapshot.snapshot_hash.hex()
            if expected != actual or keccak256(snapshot.data) != snapshot.snapshot_hash:
                return False
        return True

    # -- restarts and other processes ----------------------------------------------------

    @rule(
        both=st.booleans(),
        incremental=st.none() | st.booleans(),
        keep=st.none() | st.integers(0, 3),
        upgraded=st.none() | st.booleans(),
        projections=st.none() | st.just("all") | st.sampled_from(PROJECTION_SETS),
    )
    def reopen(
        self,
        both: bool,
        incremental: bool | None,
        keep: int | None,
        upgraded: bool | None,
        projections: str | tuple[str, ...] | None,
    ) -> None:
        """A restart; with ``incremental`` or ``keep``, the policy's options changed
        meanwhile; with ``upgraded``, the channel projection's schema version is 2 (or back
        to 1): snapshots of the other version are ignored (a store left open keeps its own);
        with ``projections``, the stores opened from now on fold those (or ``"all"``)."""
        assert self.store is not None
        self.store.close()
        policy = self.options["snapshot_policy"]
        self.options["snapshot_policy"] = EveryNEvents(
            n=policy.n,
            keep=policy.keep if keep is None else keep,
            incremental=policy.incremental if incremental is None else incremental,
        )
        if upgraded is not None:
            self.options["plugins"] = channel_host(upgraded)
        if projections == "all":
            self.options.pop("projections", None)
        elif projections is not None:
            self.options["projections"] = list(projections)
        self.store = self._open()
        self.stale.discard("main")
        if both and self.other is not None:
            self.other.close()
            self.other = None
            self.stale.discard("other")

    @precondition(lambda self: self.stale)
    @rule()
    def refresh(self) -> None:
        for name in sorted(self.stale):
            store = self._writer(name)
            assert store.refresh() == len(self.events)
        self.stale.clear()

    # -- reads ---------------------------------------------------------------------------

    @precondition(lambda self: self.entities)
    @rule(writer=st.sampled_from(WRITERS), data=st.data())
    def reconstruct(self, writer: str, data: st.DataObject) -> None:
        """At an offset drawn, every entity as the fold from offset 0 has it (DESIGN
        section 5); at the end of the log (``at=None``, and ``state``) too, what another
        store appended included (ADR 0060)."""
        store = self._writer(writer)
        at = data.draw(st.integers(0, len(self.events)), label="at")
        for kind, entity in sorted(self.entities):
            self._same_state(store, kind, entity, at)
            self._same_state(store, kind, entity, None)
        self.stale.discard(self._name(store))

    def _same_state(self, store: EventStore, kind: str, entity: str, at: int | None) -> None:
        try:
            expected = self.cold.reconstruct(kind, entity, at)
        except NotFound:
            with pytest.raises(NotFound):
                store.reconstruct(kind, entity, at)
            if at is None:
                with pytest.raises(NotFound):
                    store.state(kind, entity)
            return
        assert store.reconstruct(kind, entity, at) == expected, (kind, entity, at)
        if at is None and store.inline_projection(store.reconstructor.resolve_kind(kind)):
            assert store.state(kind, entity) == expected, (kind, entity)

    @rule(writer=st.sampled_from(WRITERS), data=st.data())
    def read(self, writer: str, data: st.DataObject) -> None:
        """Time-travel reads: ranges, the tail, streams and lookups by id."""
        store = self._writer(writer)
        length = len(self.events)
        start = data.draw(st.integers(0, length + 2), label="start")
        end = data.draw(st.integers(start, length + 3), label="end")
        got = [(r.offset, r.event_id) for r in store.read_range(start, end)]
        assert got == list(enumerate(self.ids))[start:end]
        assert [r.event_id for r in store.read_from(start)] == self.ids[start:]
        if self.entities:
            _, entity = data.draw(st.sampled_from(sorted(self.entities)), label="stream")
            stream = [r.offset for r in store.read_stream(entity)]
            assert stream == [o for o, e in enumerate(self.events) if entity in e.streams]
            assert store.stream_version(entity) == len(stream)
        if self.ids:
            offset = data.draw(st.integers(0, length - 1), label="get")
            assert store.get(self.ids[offset]).offset == offset

    @rule(writer=st.sampled_from(WRITERS))
    def verify(self, writer: str) -> None:
        store = self._writer(writer)
        if self._snapshots_as_announced(store.backend):
            assert store.verify() == len(self.events)
        else:
            with pytest.raises(IntegrityError, match="snapshot"):
                store.verify()

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def lengths_agree(self) -> None:
        if self.store is None:
            return
        for name, store in (("main", self.store), ("other", self.other)):
            if store is None:
                continue
            assert store.backend.head().length == len(self.events)
            if self.shared or name not in self.stale:
                assert len(store) == len(self.events)

    @invariant()
    def folded_state_agrees(self) -> None:
        """What each store folded inline is the reference's fold, once it saw the log."""
        expected = {name: p.dump() for name, p in self.reference.projections.items()}
        for name, store in (("main", self.store), ("other", self.other)):
            if store is None or name in self.stale:
                continue
            folded = {n: p.dump() for n, p in store.projections.items()}
            assert folded == {n: expected[n] for n in folded}, name


def _stored_offsets(backend: Backend) -> set[int]:
    if not isinstance(backend, ManagesSnapshots):
        return set()
    return {offset for offset, _size in backend.snapshot_sizes()}


def _base_of(snapshot: StoredSnapshot) -> int | None:
    """The offset of the snapshot ``snapshot`` is taken on, when its first line says so."""
    try:
        reference = base_reference(snapshot)
    except DecodeError:  # a damaged first line: it keeps nothing alive
        return None
    return None if reference is None else reference[0]
