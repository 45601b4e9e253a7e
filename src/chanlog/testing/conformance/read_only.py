"""Conformance cases for a handle opened read-only (the factory's ``read_only=True``): it
reads what writers committed, refuses every write with
:class:`~chanlog.errors.StorageError`, and never creates a log (opening one that does not
exist is a :class:`~chanlog.errors.NotFound`).

They run when the subclass overrides
:meth:`~chanlog.testing.conformance.fixtures.ConformanceFixtures.open_read_only`.
"""

from __future__ import annotations

import pytest

from chanlog.backends.base import Backend
from chanlog.backends.capabilities import (
    ExposesStreamIndex,
    ManagesSnapshots,
    MayBeReadOnly,
    RemembersHead,
)
from chanlog.errors import IntegrityError, NotFound, StorageError
from chanlog.hashing import GENESIS_CHAIN_HASH
from chanlog.records import Head, StoredSnapshot
from chanlog.store import EventStore
from chanlog.testing.conformance.fixtures import ConformanceFixtures, OpenBackend
from chanlog.testing.events import sample_events, stored_records

__all__ = ["ReadOnlyCases"]

_SNAPSHOT = StoredSnapshot(6, {"objective": 1}, b"read-only test", b"\x07" * 32)


def _fill(backend: Backend) -> None:
    with backend.write() as transaction:
        transaction.append(stored_records(sample_events(12, objectives=3), transaction.head))
    backend.save_snapshot(_SNAPSHOT)


class ReadOnlyCases(ConformanceFixtures):
    """A read-only handle reads, refuses writes, and creates nothing."""

    def test_a_read_only_handle_reads_what_a_writer_committed(
        self, opener: OpenBackend, read_only_opener: OpenBackend
    ) -> None:
        writer = opener()
        if not (self.durable or writer.shared):
            pytest.skip("a second handle cannot reach the first one's log")
        _fill(writer)
        reader = read_only_opener()
        if isinstance(reader, MayBeReadOnly):
            assert reader.read_only is True
        stream = sample_events(1, objectives=3)[0].objective_id.lower()
        assert reader.head() == writer.head()
        assert list(reader.read(0, 100)) == list(writer.read(0, 100))
        assert list(reader.read_stream(stream)) == list(writer.read_stream(stream))
        assert reader.stream_version(stream) == writer.stream_version(stream) == 4
        first = next(writer.read(0, 1))
        assert reader.find(first.event_id) == 0
        assert reader.latest_snapshot() == _SNAPSHOT
        if isinstance(reader, ExposesStreamIndex) and isinstance(writer, ExposesStreamIndex):
            assert list(reader.stream_index()) == list(writer.stream_index())
        with EventStore(reader, projections=[]) as store:
            assert len(store) == 12
            # The records check out; the raw snapshot no event announces is reported.
            with pytest.raises(IntegrityError, match=r"offset 6: .*no snapshot-created"):
                store.verify()
            with pytest.raises(StorageError):
                store.append(sample_events(1, start=12)[0])
        assert writer.head().length == 12

    def test_a_read_only_handle_refuses_every_write(
        self, opener: OpenBackend, read_only_opener: OpenBackend
    ) -> None:
        if self.durable:
            _fill(opener())  # the log must exist before a read-only handle opens it
        reader = read_only_opener()
        head = reader.head()
        snapshot = reader.latest_snapshot()

        def write() -> None:
            with reader.write() as transaction:
                transaction.append(stored_records(sample_events(1, start=50), transaction.head))

        with pytest.raises(StorageError):
            write()
        with pytest.raises(StorageError):
            reader.save_snapshot(StoredSnapshot(1, {}, b"no", bytes(32)))
        if isinstance(reader, RemembersHead):
            with pytest.raises(StorageError):
                reader.remember_head(head)
        if isinstance(reader, ManagesSnapshots):
            with pytest.raises(StorageError):
                reader.delete_snapshots([6])
        assert reader.head() == head
        assert reader.latest_snapshot() == snapshot
        reader.close()
        reader.close()

    def test_read_only_never_creates_a_log(self, read_only_opener: OpenBackend) -> None:
        if not (self.durable and self.opening_creates_the_log):
            pytest.skip("the log exists before the test's first open")
        with pytest.raises(NotFound):
            read_only_opener()

    def test_a_read_only_handle_on_an_empty_log(
        self, opener: OpenBackend, read_only_opener: OpenBackend
    ) -> None:
        if self.durable:
            opener().close()  # created, empty
        reader = read_only_opener()
        assert reader.head() == Head(0, GENESIS_CHAIN_HASH)
        assert list(reader.read(0, 10)) == []
        assert reader.latest_snapshot() is None
