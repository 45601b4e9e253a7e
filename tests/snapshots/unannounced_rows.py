"""A stored snapshot that the log does not announce (a row from another log, or one written
outside chanlog) with a hash of its own that matches its bytes: a store opens past it,
reconstructs as a fold from offset 0 does, never announces it as its own, and ``verify``
names it until a snapshot taken again there replaces it (ADR 0067). Shared by the backends'
suites: each passes a function opening a new handle on one log of its own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chanlog import EventStore, IntegrityError, NotFound
from chanlog.backends.base import Backend
from chanlog.backends.memory import MemoryBackend
from chanlog.events import Event
from chanlog.reconstruct import StateReconstructor
from chanlog.records import StoredSnapshot
from chanlog.workload import Workload

OpenBackend = Callable[[], Backend]


def _events(seed: int) -> list[Event]:
    return Workload(seed=seed, channels=3, turns=4, messages=0).events()


def _whole_snapshot_of(events: list[Event], at: int) -> StoredSnapshot:
    """The whole snapshot at ``at`` of another log: ``events[:at]`` in a log of its own."""
    with EventStore(MemoryBackend()) as other:
        other.append_batch(events[:at])
        return other.snapshot()


def _entities(store: EventStore) -> set[tuple[str, str]]:
    found = set()
    for record in store.read_from(0):
        for field, kind in (("channel_id", "channel"), ("objective_id", "objective")):
            value = getattr(record.event, field, None)
            if isinstance(value, str):
                found.add((kind, value))
    return found


def _state(
    reconstruct: Callable[[str, str, int | None], object], kind: str, entity: str, at: int | None
) -> object:
    try:
        return reconstruct(kind, entity, at)
    except NotFound:
        return None


def assert_folds_from_nothing(store: EventStore) -> None:
    """Every entity, at every offset and now, as a fold from offset 0 has it."""
    cold = StateReconstructor(store, use_snapshots=False)
    for kind, entity in sorted(_entities(store)):
        for at in [*range(len(store) + 1), None]:
            expected = _state(cold.reconstruct, kind, entity, at)
            assert _state(store.reconstruct, kind, entity, at) == expected, (kind, entity, at)
        assert _state(lambda k, e, _at: store.state(k, e), kind, entity, None) == expected


def a_row_from_another_log_is_not_used(open_backend: OpenBackend) -> None:
    events = _events(3)
    with EventStore(open_backend(), snapshot_policy="never") as store:
        store.append_batch(events[:20])
        ours = store.snapshot()
        store.append_batch(events[20:30])
    foreign = _whole_snapshot_of(_events(4), ours.offset)
    assert foreign.offset == ours.offset and foreign.snapshot_hash != ours.snapshot_hash
    with EventStore(open_backend(), projections=[]) as editor:
        editor.backend.save_snapshot(foreign)
    with EventStore(open_backend(), snapshot_policy="never") as store:  # it opens
        assert_folds_from_nothing(store)
        with pytest.raises(IntegrityError, match=f"snapshot at offset {ours.offset} does not"):
            store.verify()
        # What the operator does: take the snapshot again there.
        again = store.snapshot(ours.offset)
        assert again.snapshot_hash == ours.snapshot_hash
        assert store.verify() == len(store)
        assert_folds_from_nothing(store)


def a_stray_row_at_the_head_is_not_announced(open_backend: OpenBackend) -> None:
    events = _events(5)
    with EventStore(open_backend(), snapshot_policy="never") as store:
        store.append_batch(events[:25])
        head = len(store)
        stray = _whole_snapshot_of(_events(6), head)
        store.backend.save_snapshot(stray)
        taken = store.snapshot()  # of the end of the log, where the stray row stands
        assert taken.offset == head and taken.snapshot_hash != stray.snapshot_hash
        assert store.verify() == len(store)
        assert_folds_from_nothing(store)
