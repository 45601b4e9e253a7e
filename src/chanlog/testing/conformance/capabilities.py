"""Conformance cases for the optional capabilities of :mod:`chanlog.backends.capabilities`.

Each case class tests one capability and skips, saying so, when the backend (or its write
transaction) does not implement that protocol; ``isinstance`` against the protocol decides,
exactly as the store does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs
import orjson
import pytest

from chanlog.backends.base import Backend
from chanlog.backends.capabilities import (
    AppendsUnlessKnown,
    CountsStreams,
    DeletesSnapshotsInTransaction,
    ExposesStreamIndex,
    FileBacked,
    FindsMany,
    ManagesSnapshots,
    MayBeReadOnly,
    ReadsStreamPayloads,
    RecordsSerializer,
    RemembersHead,
    SavesSnapshotsInTransaction,
    transaction_capabilities,
)
from chanlog.errors import ConfigError, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH, chain_next, keccak256
from chanlog.records import Head, StoredRecord, StoredSnapshot
from chanlog.serializers import JsonSerializer
from chanlog.snapshots.codec import base_reference
from chanlog.snapshots.policies import EveryNEvents
from chanlog.store import EventStore
from chanlog.testing.conformance.fixtures import ConformanceFixtures, OpenBackend
from chanlog.testing.events import offsets_of, sample_events, stored_records
from chanlog.workload import Workload

__all__ = [
    "AppendsUnlessKnownCases",
    "CountsStreamsCases",
    "DeletesSnapshotsInTransactionCases",
    "FileBackedCases",
    "FindsManyCases",
    "ManagesSnapshotsCases",
    "ReadsStreamPayloadsCases",
    "RecordsSerializerCases",
    "RemembersHeadCases",
    "SavesSnapshotsInTransactionCases",
    "StreamIndexCases",
    "records_with_streams",
]

_EMPTY = Head(0, GENESIS_CHAIN_HASH)

# Streams chosen so that code point order is not alphabetical order in most locales: "Z"
# sorts before "a", and "ä" after "b".
_STREAM_PATTERN: tuple[tuple[str, ...], ...] = (
    ("a",),
    ("b", "a"),
    (),
    ("Z", "ä", "a"),
    ("ä",),
    ("b",),
    ("a", "Z"),
)


def records_with_streams(streams_of: Sequence[tuple[str, ...]], head: Head) -> list[StoredRecord]:
    """Records after ``head`` with exactly the given streams (one record per entry): the
    payloads are small JSON objects and the ids distinct, the chain hashes continue
    ``head``. A backend stores what it is given, so any streams can be tested this way."""
    records: list[StoredRecord] = []
    offset, chain = head.length, head.chain_hash
    for streams in streams_of:
        event_id = keccak256(f"conformance record {offset}".encode())
        chain = chain_next(chain, event_id)
        payload = orjson.dumps({"n": offset, "streams": list(streams)})
        records.append(StoredRecord(offset, event_id, "conformance-test", streams, payload, chain))
        offset += 1
    return records


def _snapshot(offset: int, data: bytes) -> StoredSnapshot:
    return StoredSnapshot(offset, {"objective": 1}, data, bytes([offset % 256]) * 32)


# -- write-transaction capabilities -------------------------------------------------------


class FindsManyCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.FindsMany` agrees with ``find``."""

    def test_find_many_agrees_with_find(self, backend: Backend) -> None:
        records = stored_records(sample_events(5), _EMPTY)
        with backend.write() as transaction:
            if not isinstance(transaction, FindsMany):
                pytest.skip("the backend's transactions are not FindsMany")
            assert transaction_capabilities(transaction).finds_many
            transaction.append(records[:3])
            # Its own appends count, in any order, with repeats and unknown ids.
            ids = [records[2].event_id, records[4].event_id, records[0].event_id]
            ids += [records[2].event_id, bytes(32)]
            assert transaction.find_many(ids) == [2, None, 0, 2, None]
            assert transaction.find_many(ids) == [transaction.find(each) for each in ids]
            assert transaction.find_many([]) == []


class AppendsUnlessKnownCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.AppendsUnlessKnown` (ADR 0022)."""

    def test_append_unless_known_refuses_a_known_id_and_leaves_nothing(
        self, backend: Backend
    ) -> None:
        first = stored_records(sample_events(3), _EMPTY)
        with backend.write() as transaction:
            if not isinstance(transaction, AppendsUnlessKnown):
                pytest.skip("the backend's transactions are not AppendsUnlessKnown")
            assert transaction_capabilities(transaction).appends_unless_known
            assert transaction.append_unless_known([])
            assert transaction.append_unless_known(first)
        head = backend.head()
        fresh = stored_records(sample_events(5, start=3), head)
        # A known id in the middle of a batch: the records before it must not stay behind.
        clashing = [*fresh[:2], attrs.evolve(fresh[2], event_id=first[1].event_id), *fresh[3:]]
        with backend.write() as transaction:
            assert isinstance(transaction, AppendsUnlessKnown)
            assert not transaction.append_unless_known(clashing)
            assert not transaction.append_unless_known(
                [attrs.evolve(fresh[0], event_id=first[0].event_id)]
            )
            assert transaction.find(fresh[0].event_id) is None
            assert transaction.stream_version(fresh[0].streams[0]) == 0
            # The transaction goes on: the same offsets are still free.
            assert transaction.append_unless_known(fresh)
        assert backend.head() == Head(8, fresh[-1].chain_hash)
        assert list(backend.read(0, 100)) == first + fresh
        assert offsets_of(list(backend.read_stream(fresh[0].streams[0]))) == [3]


class SavesSnapshotsInTransactionCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.SavesSnapshotsInTransaction`: a snapshot
    commits with the records of its transaction, or neither does."""

    def test_a_snapshot_commits_with_the_records_of_its_transaction(self, backend: Backend) -> None:
        records = stored_records(sample_events(4), _EMPTY)
        with backend.write() as transaction:
            if not isinstance(transaction, SavesSnapshotsInTransaction):
                pytest.skip("the backend's transactions are not SavesSnapshotsInTransaction")
            assert transaction_capabilities(transaction).saves_snapshots
            transaction.append(records)
            transaction.save_snapshot(_snapshot(3, b"first"))
            transaction.save_snapshot(_snapshot(3, b"replaced in the same transaction"))
        assert backend.head() == Head(4, records[-1].chain_hash)
        assert backend.latest_snapshot() == _snapshot(3, b"replaced in the same transaction")
        with backend.write() as transaction:
            assert isinstance(transaction, SavesSnapshotsInTransaction)
            transaction.save_snapshot(_snapshot(3, b"replaced by a later transaction"))
        assert backend.latest_snapshot() == _snapshot(3, b"replaced by a later transaction")

    def test_a_snapshot_rolls_back_with_the_records_of_its_transaction(
        self, backend: Backend
    ) -> None:
        records = stored_records(sample_events(4), _EMPTY)

        def abort() -> None:
            with backend.write() as transaction:
                if not isinstance(transaction, SavesSnapshotsInTransaction):
                    pytest.skip("the backend's transactions are not SavesSnapshotsInTransaction")
                transaction.append(records)
                transaction.save_snapshot(_snapshot(4, b"never"))
                raise RuntimeError("abort the transaction")

        with pytest.raises(RuntimeError, match="abort"):
            abort()
        assert backend.head() == _EMPTY
        assert backend.latest_snapshot() is None

    def test_another_handle_sees_the_snapshot_once_committed(self, opener: OpenBackend) -> None:
        first = opener()
        if not first.shared:
            pytest.skip("the backend is not shared")
        second = opener()
        records = stored_records(sample_events(2), _EMPTY)
        with first.write() as transaction:
            if not isinstance(transaction, SavesSnapshotsInTransaction):
                pytest.skip("the backend's transactions are not SavesSnapshotsInTransaction")
            transaction.append(records)
            transaction.save_snapshot(_snapshot(2, b"shared"))
            assert second.latest_snapshot() is None  # not before the commit
        assert second.latest_snapshot() == _snapshot(2, b"shared")
        assert second.head().length == 2


class DeletesSnapshotsInTransactionCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.DeletesSnapshotsInTransaction`: snapshots
    deleted in a write transaction are gone once it commits, and all there when it rolls
    back; another handle sees them until the commit."""

    def _with_snapshots(self, backend: Backend) -> list[StoredSnapshot]:
        snapshots = [_snapshot(offset, b"at %d" % offset) for offset in (1, 2, 3)]
        with backend.write() as transaction:
            if not isinstance(transaction, DeletesSnapshotsInTransaction):
                pytest.skip("the backend's transactions are not DeletesSnapshotsInTransaction")
            transaction.append(stored_records(sample_events(3), _EMPTY))
        for snapshot in snapshots:
            backend.save_snapshot(snapshot)
        return snapshots

    def test_snapshots_deleted_in_a_transaction_are_gone_when_it_commits(
        self, backend: Backend
    ) -> None:
        snapshots = self._with_snapshots(backend)
        with backend.write() as transaction:
            assert isinstance(transaction, DeletesSnapshotsInTransaction)
            assert transaction_capabilities(transaction).deletes_snapshots
            assert transaction.delete_snapshots([3, 1, 3, 9]) == 2  # repeats, unknown: ignored
            assert transaction.delete_snapshots([]) == 0
        assert backend.latest_snapshot() == snapshots[1]
        assert backend.latest_snapshot(1) is None
        assert backend.head().length == 3

    def test_snapshots_deleted_in_a_transaction_stay_when_it_rolls_back(
        self, backend: Backend
    ) -> None:
        snapshots = self._with_snapshots(backend)

        def abort() -> None:
            with backend.write() as transaction:
                assert isinstance(transaction, DeletesSnapshotsInTransaction)
                transaction.delete_snapshots([1, 2, 3])
                raise RuntimeError("abort the transaction")

        with pytest.raises(RuntimeError, match="abort"):
            abort()
        assert [backend.latest_snapshot(offset) for offset in (1, 2, 3)] == snapshots

    def test_another_handle_sees_the_snapshots_until_the_commit(self, opener: OpenBackend) -> None:
        first = opener()
        if not first.shared:
            pytest.skip("the backend is not shared")
        snapshots = self._with_snapshots(first)
        second = opener()
        with first.write() as transaction:
            assert isinstance(transaction, DeletesSnapshotsInTransaction)
            transaction.delete_snapshots([3])
            assert second.latest_snapshot() == snapshots[2]  # not before the commit
        assert second.latest_snapshot() == snapshots[1]


# -- backend capabilities ------------------------------------------------------------------


class ReadsStreamPayloadsCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.ReadsStreamPayloads` agrees with
    ``read_stream``."""

    def test_read_stream_payloads_agrees_with_read_stream(self, backend: Backend) -> None:
        if not isinstance(backend, ReadsStreamPayloads):
            pytest.skip("the backend is not ReadsStreamPayloads")
        records = stored_records(sample_events(70, objectives=4), _EMPTY)
        with backend.write() as transaction:
            transaction.append(records)
        objective = records[1].streams[1]
        for bounds in ((), (5,), (6, 14), (18,), (0, 0), (40, 69), (66,)):
            expected = [
                (record.offset, record.event_type, record.payload)
                for record in backend.read_stream(objective, *bounds)
            ]
            payloads = backend.read_stream_payloads(objective, *bounds)
            assert [tuple(entry) for entry in payloads] == expected
        assert list(backend.read_stream_payloads("0x" + "ab" * 32)) == []
        reader = backend.read_stream_payloads(objective)
        assert iter(reader) is reader


class StreamIndexCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.ExposesStreamIndex`: the index lists exactly
    the streams of the stored records, in offset then stream order, and agrees with what
    ``read_stream`` returns."""

    def test_the_stream_index_of_an_empty_log_is_empty(self, backend: Backend) -> None:
        if not isinstance(backend, ExposesStreamIndex):
            pytest.skip("the backend is not ExposesStreamIndex")
        assert list(backend.stream_index()) == []

    def test_the_stream_index_lists_every_stream_of_every_record_in_order(
        self, backend: Backend
    ) -> None:
        if not isinstance(backend, ExposesStreamIndex):
            pytest.skip("the backend is not ExposesStreamIndex")
        # More than a block of the SQLite index (32), so indexed rows and the tail count.
        pattern = [_STREAM_PATTERN[number % len(_STREAM_PATTERN)] for number in range(75)]
        records = records_with_streams(pattern, _EMPTY)
        with backend.write() as transaction:
            transaction.append(records[:40])
            transaction.append(records[40:])
        expected = [
            (stream, record.offset)
            for record in records
            for stream in sorted(dict.fromkeys(record.streams))
        ]
        index = backend.stream_index()
        assert iter(index) is index
        assert list(index) == expected
        for stream in {stream for streams in pattern for stream in streams}:
            indexed = [offset for name, offset in backend.stream_index() if name == stream]
            assert indexed == offsets_of(list(backend.read_stream(stream)))
            assert len(indexed) == backend.stream_version(stream)

    def test_the_stream_index_is_as_of_the_start_of_the_iteration(self, backend: Backend) -> None:
        if not isinstance(backend, ExposesStreamIndex):
            pytest.skip("the backend is not ExposesStreamIndex")
        records = stored_records(sample_events(10), _EMPTY)
        with backend.write() as transaction:
            transaction.append(records[:6])
        index = backend.stream_index()
        first = next(index)
        with backend.write() as transaction:
            transaction.append(records[6:])
        pairs = [first, *index]
        assert {offset for _, offset in pairs} == set(range(6))
        assert len(list(backend.stream_index())) == 2 * 10


class CountsStreamsCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.CountsStreams`: the stored counts are the
    number of records per stream."""

    def test_stored_stream_versions_count_the_records_of_each_stream(
        self, backend: Backend
    ) -> None:
        if not isinstance(backend, CountsStreams):
            pytest.skip("the backend is not CountsStreams")
        assert dict(backend.stored_stream_versions()) == {}
        pattern = [_STREAM_PATTERN[number % len(_STREAM_PATTERN)] for number in range(40)]
        records = records_with_streams(pattern, _EMPTY)
        with backend.write() as transaction:
            transaction.append(records)
        expected = Counter(stream for streams in pattern for stream in dict.fromkeys(streams))
        stored = dict(backend.stored_stream_versions())
        assert stored == dict(expected)
        for stream, count in stored.items():
            assert backend.stream_version(stream) == count


class RemembersHeadCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.RemembersHead`: a remembered head round-trips
    and, for a durable backend, outlives the handle."""

    def test_a_new_log_remembers_no_head(self, backend: Backend) -> None:
        if not isinstance(backend, RemembersHead):
            pytest.skip("the backend is not RemembersHead")
        assert backend.remembered_head() is None

    def test_a_remembered_head_round_trips(self, opener: OpenBackend) -> None:
        backend = opener()
        if not isinstance(backend, RemembersHead):
            pytest.skip("the backend is not RemembersHead")
        records = stored_records(sample_events(5), _EMPTY)
        with backend.write() as transaction:
            transaction.append(records)
        head = backend.head()
        backend.remember_head(head)
        assert backend.remembered_head() == head
        earlier = Head(2, records[1].chain_hash)
        backend.remember_head(earlier)  # an explicit call may go back: the caller decides
        assert backend.remembered_head() == earlier
        if self.durable:
            backend.close()
            reopened = opener()
            assert isinstance(reopened, RemembersHead)
            remembered = reopened.remembered_head()
            # Closing may remember the head again (it extends the remembered one).
            assert remembered in (earlier, head)


class FileBackedCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.FileBacked`: ``path`` names the log's file."""

    def test_path_names_the_file_of_the_log(self, backend: Backend) -> None:
        if not isinstance(backend, FileBacked):
            pytest.skip("the backend is not FileBacked")
        assert isinstance(backend.path, Path)
        assert backend.path.is_file()


class MayBeReadOnlyCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.MayBeReadOnly`: a handle opened normally says
    it is writable."""

    def test_a_writable_handle_says_so(self, backend: Backend) -> None:
        if not isinstance(backend, MayBeReadOnly):
            pytest.skip("the backend is not MayBeReadOnly")
        assert backend.read_only is False


class ManagesSnapshotsCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.ManagesSnapshots`: sizes listed by offset,
    deletes that leave the others (and the records) alone."""

    def test_snapshots_are_listed_with_their_sizes_and_deleted(self, backend: Backend) -> None:
        if not isinstance(backend, ManagesSnapshots):
            pytest.skip("the backend is not ManagesSnapshots")
        assert backend.snapshot_sizes() == []
        records = stored_records(sample_events(6), _EMPTY)
        with backend.write() as transaction:
            transaction.append(records)
        snapshots = [
            StoredSnapshot(offset, {"p": 1}, b"x" * (10 + offset), keccak256(b"%d" % offset))
            for offset in (2, 4, 6)
        ]
        for snapshot in snapshots:
            backend.save_snapshot(snapshot)
        assert backend.snapshot_sizes() == [(2, 12), (4, 14), (6, 16)]
        assert backend.delete_snapshots([4, 5, 4]) == 1  # unknown offsets and repeats: ignored
        assert backend.snapshot_sizes() == [(2, 12), (6, 16)]
        assert backend.latest_snapshot(5) == snapshots[0]
        assert backend.latest_snapshot() == snapshots[2]
        assert backend.delete_snapshots([]) == 0
        assert backend.delete_snapshots([2, 6]) == 2
        assert backend.latest_snapshot() is None
        assert list(backend.read(0, 10)) == records

    def test_incremental_snapshots_are_read_through_their_base(self, opener: OpenBackend) -> None:
        """ADR 0036 on this backend: a snapshot taken on the last one holds what changed,
        a reopened store reads the rest through the base, and pruning keeps the base."""
        backend = opener()
        if not isinstance(backend, ManagesSnapshots):
            pytest.skip("the backend is not ManagesSnapshots")
        store = EventStore(backend, snapshot_policy=EveryNEvents(n=10**9, keep=1))
        try:
            store.append_batch(Workload(channels=12, turns=2, seed=31).events())
            whole = store.snapshot()
            store.append_batch(Workload(channels=1, turns=2, seed=32).events())
            incremental = store.snapshot()
            assert base_reference(incremental) == (whole.offset, whole.snapshot_hash)
            assert len(incremental.data) < len(whole.data)
            assert [offset for offset, _ in backend.snapshot_sizes()] == [
                whole.offset,
                incremental.offset,
            ]  # keep=1, and the base of the kept one
            expected = {name: p.dump() for name, p in store.projections.items()}
            # A new store: on a new handle where the log outlives it, else on this one.
            reopened = EventStore(opener() if self.durable else backend)
            assert reopened.snapshots.latest_snapshot() == incremental
            assert {name: p.dump() for name, p in reopened.projections.items()} == expected
            reopened.close()
        finally:
            store.close()


class _OtherSerializer(JsonSerializer):
    """JSON at rest under another name: a store configured with it must not open a log
    that records ``json``."""

    name = "conformance-other"


class RecordsSerializerCases(ConformanceFixtures):
    """:class:`~chanlog.backends.capabilities.RecordsSerializer`: the first recorded name
    stays, outlives the handle, is read by a read-only handle, and a store configured with
    another serializer is refused."""

    def test_the_first_name_recorded_stays(self, opener: OpenBackend) -> None:
        backend = opener()
        if not isinstance(backend, RecordsSerializer):
            pytest.skip("the backend is not RecordsSerializer")
        assert backend.recorded_serializer() is None
        assert backend.record_serializer("json") == "json"
        assert backend.record_serializer("msgpack") == "json"
        assert backend.recorded_serializer() == "json"
        if self.durable:
            backend.close()
            reopened = opener()
            assert isinstance(reopened, RecordsSerializer)
            assert reopened.recorded_serializer() == "json"

    def test_a_read_only_handle_reads_it_and_records_nothing(
        self, opener: OpenBackend, read_only_opener: OpenBackend
    ) -> None:
        writer = opener()
        if not isinstance(writer, RecordsSerializer):
            pytest.skip("the backend is not RecordsSerializer")
        if not (self.durable or writer.shared):
            pytest.skip("a second handle cannot reach the first one's log")
        reader = read_only_opener()
        assert isinstance(reader, RecordsSerializer)
        assert reader.recorded_serializer() is None
        with pytest.raises(StorageError):
            reader.record_serializer("json")
        writer.record_serializer("json")
        assert reader.recorded_serializer() == "json"

    def test_a_store_records_its_serializer_and_refuses_another(self, backend: Backend) -> None:
        if not isinstance(backend, RecordsSerializer):
            pytest.skip("the backend is not RecordsSerializer")
        store = EventStore(backend, projections=[])
        assert backend.recorded_serializer() == "json"
        store.append_batch(sample_events(3))
        with pytest.raises(ConfigError) as error:
            EventStore(backend, projections=[], serializer=_OtherSerializer())
        assert "'json'" in str(error.value)
        assert "'conformance-other'" in str(error.value)
        assert backend.recorded_serializer() == "json"
        assert len(store) == 3
