"""A stored snapshot whose ``versions`` column was changed outside chanlog (not an object of
integers): the backend refuses to read the row, and a store opens past it, reconstructs as
a fold from offset 0 does, takes and prunes snapshots around it, and replaces it when a
snapshot is taken again there, as it does a snapshot whose bytes do not verify. Shared by
the backends' suites: each passes a function opening a new handle on one log of its own and
one that damages the row at an offset."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chanlog import EventStore, IntegrityError, StorageError
from chanlog.backends.base import Backend
from chanlog.snapshots import EveryNEvents
from chanlog.snapshots.codec import base_reference
from chanlog.workload import Workload
from snapshots.unannounced_rows import assert_folds_from_nothing

OpenBackend = Callable[[], Backend]
DamageVersions = Callable[[int], None]


def a_row_with_damaged_versions_is_skipped(
    open_backend: OpenBackend, damage: DamageVersions
) -> None:
    idle = Workload(channels=8, turns=1, seed=8, messages=0).events()
    traffic = Workload(channels=2, turns=8, seed=4, messages=0).events()
    policy = EveryNEvents(n=10**9, keep=0)  # incremental, nothing pruned unless asked
    with EventStore(open_backend(), snapshot_policy=policy) as store:
        store.append_batch(idle + traffic[:10])
        whole = store.snapshot()
        store.append_batch(traffic[10:20])
        newest = store.snapshot()
        assert base_reference(newest) == (whole.offset, whole.snapshot_hash)
        store.append_batch(traffic[20:30])
    damage(newest.offset)
    reader = open_backend()
    try:
        with pytest.raises(StorageError, match=f"offset {newest.offset}") as raised:
            reader.latest_snapshot()
    finally:
        reader.close()
    assert raised.value.snapshot_offset == newest.offset
    with EventStore(open_backend(), snapshot_policy=policy) as store:  # it opens
        assert_folds_from_nothing(store)
        with pytest.raises(IntegrityError, match=f"offset {newest.offset}: .*changed outside"):
            store.verify()
        # The snapshot the store takes next is not built on it, and pruning reads past it.
        taken = store.snapshot()
        assert base_reference(taken) in (None, (whole.offset, whole.snapshot_hash))
        assert store.prune_snapshots(keep=1) == [newest.offset]
    damage(whole.offset)
    with EventStore(open_backend(), snapshot_policy=policy) as store:
        assert_folds_from_nothing(store)  # the snapshot taken on it is skipped too
        # What the operator does: take the snapshot again there.
        again = store.snapshot(whole.offset)
        assert again.snapshot_hash == whole.snapshot_hash
        assert store.verify() == len(store)
        assert store.snapshots.restore(len(store)) is not None
