"""Fuzz the SQLite backend with damaged files: a real chanlog database (a few hundred
events, snapshots, closed so the write-ahead log is folded in) with 1..8 random bytes
changed, anywhere or in its first pages (the header and the schema). Opening, reading,
reconstructing and verifying it may only raise chanlog errors."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog import EventStore
from chanlog.backends.sqlite import SqliteBackend
from chanlog.snapshots import EveryNEvents
from chanlog.testing import sample_events
from fuzz.fuzz_helpers import objectives_of_samples, only_chanlog_errors, workload_events

PAGE = 4096
SAMPLES = 300
FILES = [HealthCheck.too_slow, HealthCheck.data_too_large]


def build_log(path: Path) -> dict[str, list[str]]:
    """Write the database the fuzz tests damage; return some entity ids of each kind."""
    samples = sample_events(SAMPLES)
    workload = workload_events()
    with EventStore(SqliteBackend(path), snapshot_policy=EveryNEvents(n=150)) as store:
        store.append_batch(objectives_of_samples())
        store.append_batch(workload)
        store.append_batch(samples[: SAMPLES // 2])
        store.snapshot()
        store.append_batch(samples[SAMPLES // 2 :])
        channels = sorted(store.projection("channel").ids())  # type: ignore[attr-defined]
    return {
        "objective": [samples[0].objective_id, objectives_of_samples()[3].streams[0]],
        "channel": channels[:2],
        "messages": [samples[5].message_id, samples[-1].message_id],
    }


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, list[str]]]:
    """The bytes of a closed chanlog database (no -wal beside it), and entity ids."""
    path = tmp_path_factory.mktemp("fuzz-sqlite") / "log.db"
    ids = build_log(path)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path.read_bytes(), ids


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-sqlite-copies")


def flipped(data: bytes, seed: int, count: int, limit: int | None) -> bytes:
    """``data`` with ``count`` bytes changed (each XORed with 1..255) at positions below
    ``limit`` (anywhere when None); ``seed`` picks them."""
    rng = random.Random(seed)
    damaged = bytearray(data)
    for _ in range(count):
        position = rng.randrange(min(limit or len(data), len(data)))
        damaged[position] ^= rng.randint(1, 255)
    return bytes(damaged)


def exercise(path: Path, ids: dict[str, list[str]]) -> None:
    """Everything a node does with its log, each step on its own: a refusal (a chanlog
    error) ends that step only."""
    store: EventStore | None = None
    with only_chanlog_errors():
        store = EventStore(SqliteBackend(path), checkpoint_every=0)
    if store is not None:
        try:
            with only_chanlog_errors():
                list(store.read_from(0))
            for kind, entity_ids in ids.items():
                for entity_id in entity_ids:
                    with only_chanlog_errors():
                        list(store.read_stream(entity_id))
                    with only_chanlog_errors():
                        store.stream_version(entity_id)
                    with only_chanlog_errors():
                        store.reconstruct(kind, entity_id, at=len(store) // 2)
                    with only_chanlog_errors():
                        store.reconstruct(kind, entity_id)
            with only_chanlog_errors():
                store.verify()
        finally:
            with only_chanlog_errors():
                store.close()
    # chanlog verify's way: no projections, so nothing is folded while opening.
    with only_chanlog_errors(), EventStore(SqliteBackend(path), projections=[]) as bare:
        bare.verify()


def _run(data: bytes, ids: dict[str, list[str]], directory: Path) -> None:
    with tempfile.TemporaryDirectory(dir=directory) as place:
        path = Path(place) / "log.db"
        path.write_bytes(data)
        exercise(path, ids)


def test_the_good_log_reads_and_verifies(
    good_log: tuple[bytes, dict[str, list[str]]], scratch: Path
) -> None:
    data, ids = good_log
    with tempfile.TemporaryDirectory(dir=scratch) as place:
        path = Path(place) / "log.db"
        path.write_bytes(data)
        with EventStore(SqliteBackend(path)) as store:
            total = store.verify()
            assert total > SAMPLES
            assert len(list(store.read_from(0))) == total
            for kind, entity_ids in ids.items():
                for entity_id in entity_ids:
                    assert store.reconstruct(kind, entity_id) is not None


@settings(max_examples=60, deadline=None, suppress_health_check=FILES)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 8))
def test_bytes_changed_anywhere(
    good_log: tuple[bytes, dict[str, list[str]]], scratch: Path, seed: int, count: int
) -> None:
    data, ids = good_log
    _run(flipped(data, seed, count, None), ids, scratch)


@settings(max_examples=60, deadline=None, suppress_health_check=FILES)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 8), pages=st.sampled_from([1, 2, 4]))
def test_bytes_changed_in_the_first_pages(
    good_log: tuple[bytes, dict[str, list[str]]],
    scratch: Path,
    seed: int,
    count: int,
    pages: int,
) -> None:
    data, ids = good_log
    _run(flipped(data, seed, count, pages * PAGE), ids, scratch)


@settings(max_examples=30, deadline=None, suppress_health_check=FILES)
@given(seed=st.integers(0, 2**32), cut=st.integers(1, 40))
def test_truncated_or_extended_files(
    good_log: tuple[bytes, dict[str, list[str]]], scratch: Path, seed: int, cut: int
) -> None:
    data, ids = good_log
    rng = random.Random(seed)
    if rng.random() < 0.5:
        damaged = data[: len(data) - cut * rng.choice([1, 512, PAGE])]
    else:
        damaged = data + bytes(rng.randrange(256) for _ in range(cut * rng.choice([1, PAGE])))
    _run(damaged, ids, scratch)
