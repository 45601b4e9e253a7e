"""Fuzz the snapshot format and the projections' loaders: damaged snapshot bytes (with the
hash recomputed, so the damage gets past the hash check, and without), damaged headers and
versions, random and damaged projection dumps. Only chanlog errors may come out; a snapshot
that is refused is ignored by the store, which replays instead."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chanlog
from chanlog.backends.memory import MemoryBackend
from chanlog.errors import DecodeError
from chanlog.hashing import keccak256
from chanlog.plugins import default_host
from chanlog.projections import EntityProjection
from chanlog.records import StoredSnapshot
from chanlog.snapshots import decode_snapshot, open_snapshot
from fuzz.fuzz_helpers import (
    damaged_bytes,
    damaged_json,
    json_values,
    only_chanlog_errors,
    workload_events,
)

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
NAMES = sorted(default_host().projections)


@functools.cache
def _log() -> tuple[MemoryBackend, StoredSnapshot, dict[str, list[str]]]:
    """A memory log of workload events with a snapshot at its end, and the entity ids of
    each projection."""
    backend = MemoryBackend()
    with chanlog.EventStore(backend, checkpoint_every=0) as store:
        store.append_batch(workload_events())
        snapshot = store.snapshot()
        ids = {name: sorted(store.projection(name).ids()) for name in NAMES}  # type: ignore[attr-defined]
    return backend, snapshot, ids


def _fresh(name: str) -> EntityProjection[Any]:
    projection = default_host().lookup("projections", name)()
    assert isinstance(projection, EntityProjection)  # as every built-in projection is
    return projection


def _rehashed(snapshot: StoredSnapshot, data: bytes, versions: Any = None) -> StoredSnapshot:
    return StoredSnapshot(
        snapshot.offset,
        snapshot.versions if versions is None else versions,
        data,
        keccak256(data),
    )


def _use(snapshot: StoredSnapshot) -> None:
    """Everything a store does with a snapshot it opened, each step on its own (a refusal
    of one step must not hide an escape of another)."""
    _, _, ids = _log()
    view = open_snapshot(snapshot)
    for name in view.projection_names():
        with only_chanlog_errors():
            view.is_indexed(name)
            view.entity_count(name)
        for entity_id in ids.get(name, [])[:3]:
            with only_chanlog_errors():
                raw = view.raw_entity(name, entity_id)
                if raw is not None and name in NAMES:
                    _fresh(name).load_state(raw)
        if name not in NAMES:
            continue
        with only_chanlog_errors():
            _fresh(name).load(view.projection_data(name))
        with only_chanlog_errors():
            deferred = _fresh(name)
            deferred.load(view.projection_data(name, deferred=True))
            deferred.states()  # decodes every deferred state
    with only_chanlog_errors():
        decode_snapshot(snapshot)


def test_the_real_snapshot_opens() -> None:
    _, snapshot, _ = _log()
    assert set(decode_snapshot(snapshot)) == set(NAMES)
    _use(snapshot)


@settings(max_examples=80, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_damaged_snapshot_bytes_with_the_hash_recomputed(data: st.DataObject) -> None:
    _, snapshot, _ = _log()
    damaged = _rehashed(snapshot, data.draw(damaged_bytes(snapshot.data)))
    with only_chanlog_errors():
        _use(damaged)


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_damaged_snapshot_bytes_fail_the_hash(data: st.DataObject) -> None:
    _, snapshot, _ = _log()
    damaged = data.draw(damaged_bytes(snapshot.data))
    stale = StoredSnapshot(snapshot.offset, snapshot.versions, damaged, snapshot.snapshot_hash)
    if damaged == snapshot.data:
        open_snapshot(stale)
        return
    with pytest.raises(DecodeError, match="snapshot hash"):
        open_snapshot(stale)


@settings(max_examples=80, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_damaged_snapshot_header(data: st.DataObject) -> None:
    _, snapshot, _ = _log()
    newline = snapshot.data.index(b"\n")
    header = orjson.loads(snapshot.data[:newline])
    damaged = data.draw(damaged_json(header))
    try:
        head = orjson.dumps(damaged)
    except TypeError:  # not JSON orjson writes (a lone surrogate, a huge int)
        return
    with only_chanlog_errors():
        _use(_rehashed(snapshot, head + snapshot.data[newline:]))


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(versions=json_values | st.dictionaries(st.sampled_from(NAMES), json_values))
def test_random_versions(versions: Any) -> None:
    _, snapshot, _ = _log()
    with only_chanlog_errors():
        _use(_rehashed(snapshot, snapshot.data, versions))


# -- projections' loaders ----------------------------------------------------------------


@settings(suppress_health_check=SLOW)
@given(name=st.sampled_from(NAMES), value=json_values)
def test_projection_load_random_json(name: str, value: Any) -> None:
    with only_chanlog_errors():
        _fresh(name).load(value)
    with only_chanlog_errors():
        _fresh(name).load_state(value)
    with only_chanlog_errors():
        loaded = _fresh(name)
        loaded.load({"states": {"0xab": value}, "index": {}})
        loaded.get("0xAB")


@functools.cache
def _dumps() -> dict[str, Any]:
    _, snapshot, _ = _log()
    return decode_snapshot(snapshot)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW)
@given(data=st.data(), name=st.sampled_from(NAMES))
def test_projection_load_damaged_dumps(data: st.DataObject, name: str) -> None:
    dump = _dumps()[name]
    damaged = data.draw(damaged_json(dump))
    with only_chanlog_errors():
        projection = _fresh(name)
        projection.load(damaged)
        projection.states()
        projection.dump()
    states = dump["states"]
    entity_id = data.draw(st.sampled_from(sorted(states)))
    state = data.draw(damaged_json(states[entity_id]))
    with only_chanlog_errors():
        loaded = _fresh(name).load_state(state)
        _fresh(name).dump_state(loaded)


# -- the store over a damaged snapshot ---------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(data=st.data())
def test_store_with_a_damaged_snapshot(data: st.DataObject) -> None:
    """A store opening over a damaged (rehashed) snapshot restores from it or ignores it;
    reconstruction at an offset reads it; only chanlog errors come out."""
    source, snapshot, ids = _log()
    backend = MemoryBackend()
    with chanlog.EventStore(backend, projections=[]) as store:
        store.append_batch([record.event for record in chanlog.EventStore(source).read_from(0)])
    backend.save_snapshot(_rehashed(snapshot, data.draw(damaged_bytes(snapshot.data))))
    with only_chanlog_errors(), chanlog.EventStore(backend, checkpoint_every=0) as store:
        for name in NAMES:
            for entity_id in ids[name][:2]:
                with only_chanlog_errors():
                    store.reconstruct(name, entity_id, at=len(store))
                with only_chanlog_errors():
                    store.state(name, entity_id)
        with contextlib.suppress(DecodeError):
            store.snapshots.latest_snapshot()
