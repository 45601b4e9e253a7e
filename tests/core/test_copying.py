"""``EventStore.append_at`` and :class:`chanlog.copying.LogCopy`: a log copied record for
record, whatever the importing store's snapshot policy (issue 18 item 3, ADR 0032)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from chanlog import (
    ConcurrencyError,
    DecodeError,
    EventStore,
    IntegrityError,
    InvalidArgument,
    InvalidTransition,
    StorageError,
)
from chanlog.backends.memory import MemoryBackend
from chanlog.cli.demo_events import demo_events
from chanlog.copying import (
    ExportedRecord,
    LogCopy,
    canonical_payload,
    export_line,
    export_line_of,
    parse_export_line,
)
from chanlog.records import StoredRecord
from chanlog.serializers import JsonSerializer
from chanlog.snapshots.policies import EveryNEvents
from chanlog.workload import Workload

TYPES = EventStore().plugins.event_types


def original(snapshot_every: int = 40) -> EventStore:
    store = EventStore(snapshot_policy=EveryNEvents(snapshot_every))
    workload = Workload(channels=6, turns=8, seed=3)
    for batch in workload.batches(25):
        store.append_batch(batch)
    return store


def exported(store: EventStore, start: int = 0) -> list[ExportedRecord]:
    """The store's export lines, through JSON as ``chanlog export`` writes them."""
    return [
        parse_export_line(orjson.loads(orjson.dumps(export_line(record))), TYPES, f"line {n}")
        for n, record in enumerate(store.read_from(start), start=start + 1)
    ]


def lines(store: EventStore) -> list[dict[str, Any]]:
    return [export_line(record) for record in store.read_from(0)]


@pytest.mark.parametrize("policy", ["every-n-events", "never"])
def test_a_copy_is_the_same_log_whatever_its_policy(policy: str) -> None:
    source = original()
    announced = sum(1 for r in source if r.event_type == "snapshot-created")
    assert announced >= 3
    copy = EventStore(snapshot_policy=EveryNEvents(7) if policy == "every-n-events" else policy)
    copier = LogCopy(copy)
    records = exported(source)
    for start in range(0, len(records), 50):
        copier.add(records[start : start + 50])
    assert lines(copy) == lines(source)
    assert copier.appended == len(source) and copier.present == 0
    assert copier.snapshots == announced
    assert copy.backend.latest_snapshot() == source.backend.latest_snapshot()
    assert copy.verify() == len(source)


def test_other_projections_copy_the_log_without_its_snapshots() -> None:
    source = original()
    copy = EventStore(projections=["objective"])
    copier = LogCopy(copy)
    copier.add(exported(source))
    assert lines(copy) == lines(source)
    assert copier.snapshots == 0 and copy.backend.latest_snapshot() is None
    assert copy.verify() == len(source)


def test_a_copy_resumes_after_its_beginning() -> None:
    source = original()
    records = exported(source)
    copy = EventStore()
    LogCopy(copy).add(records[:30])
    copier = LogCopy(copy)
    copier.add(records)
    assert (copier.present, copier.appended) == (30, len(records) - 30)
    later = LogCopy(copy)
    later.add(exported(source, 100))  # an export --from 100 of a log the copy holds whole
    assert later.present == len(records) - 100 and later.appended == 0
    assert lines(copy) == lines(source)


def incremental_original() -> EventStore:
    """A log whose later snapshots are incremental (ADR 0036): twelve channels, then a few
    busy ones while the others stay idle."""
    store = EventStore(snapshot_policy=EveryNEvents(n=60, keep=0))
    store.append_batch(Workload(channels=12, turns=2, seed=21).events())
    for seed in range(4):
        for event in Workload(channels=1, turns=2, seed=40 + seed).events():
            store.append(event)
    return store


def stored_snapshots(store: EventStore) -> list[Any]:
    backend: Any = store.backend
    return [backend.latest_snapshot(offset) for offset, _size in backend.snapshot_sizes()]


def test_a_resumed_copy_rebuilds_every_snapshot_an_uninterrupted_one_does() -> None:
    # The snapshots after an interruption are incremental on the last one rebuilt before
    # it: a copier that starts with no chain can rebuild none of them.
    source = incremental_original()
    records = exported(source)
    announced = [r.offset for r in records if r.event.event_type == "snapshot-created"]
    assert len(announced) >= 3
    straight = EventStore(snapshot_policy="never")
    LogCopy(straight).add(records)
    assert len(stored_snapshots(straight)) == len(announced)
    for cut in (announced[0] + 1, announced[1] - 3, announced[1] + 1, len(records) - 1):
        copy = EventStore(snapshot_policy="never")
        before = LogCopy(copy)
        before.add(records[:cut])
        resumed = LogCopy(copy)
        resumed.add(records)
        assert before.snapshots + resumed.snapshots == len(announced), cut
        assert stored_snapshots(copy) == stored_snapshots(straight), cut


def test_a_log_that_is_not_a_beginning_of_the_export_is_refused() -> None:
    records = exported(original())
    other = EventStore()
    other.append(demo_events()[0])
    with pytest.raises(ConcurrencyError, match="line 1: the log already holds another record"):
        LogCopy(other).add(records)
    assert len(other) == 1
    empty = EventStore()
    with pytest.raises(ConcurrencyError, match="line 11: the export starts at offset 10"):
        LogCopy(empty).add(records[10:])
    assert len(empty) == 0


def test_a_changed_or_cut_export_is_refused_before_anything_is_written() -> None:
    records = exported(original())
    copy = EventStore()
    forged = [*records[:5], ExportedRecord(5, records[5].event, records[5].raw_id, bytes(32), "x")]
    with pytest.raises(DecodeError, match=r"x: chain_hash 0x0+ does not follow") as error:
        LogCopy(copy).add(forged)
    assert error.value.path == "chain_hash"
    with pytest.raises(DecodeError, match="line 7: offset 6 follows offset 4"):
        LogCopy(copy).add([*records[:5], *records[6:8]])
    assert len(copy) == 0


def test_a_refused_event_names_its_line_and_writes_nothing_of_its_piece() -> None:
    events = demo_events()
    source = EventStore(projections=[])
    source.append_batch([events[0], events[1], events[12]])  # completed before approved
    copy = EventStore()
    with pytest.raises(InvalidTransition, match=r"^line 3: .*objective-completed"):
        LogCopy(copy).add(exported(source))
    assert len(copy) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda line: line.pop("offset"), "not an export line"),
        (lambda line: line.update(offset=-1), "offset must be an int >= 0"),
        (lambda line: line.update(offset="3"), "offset must be an int >= 0"),
        (lambda line: line.pop("event_id"), "needs its event_id"),
        (lambda line: line.update(event_id="0x" + "11" * 32), "does not match the payload"),
        (lambda line: line.update(event_id=None), "event_id must be '0x' \\+ 64 hex"),
        (lambda line: line.update(event_id=5), "event_id must be '0x' \\+ 64 hex"),
        (lambda line: line.update(chain_hash="0x1234"), "chain_hash must be '0x' \\+ 64 hex"),
        (lambda line: line.update(chain_hash="0x" + "zz" * 32), "chain_hash must be"),
        (lambda line: line.update(chain_hash=None), "chain_hash must be"),
    ],
)
def test_a_malformed_export_line_is_named(change: Any, message: str) -> None:
    line = export_line(next(original().read_from(0)))
    change(line)
    with pytest.raises(DecodeError, match=f"^here: .*{message}"):
        parse_export_line(line, TYPES, "here")


# -- append_at --------------------------------------------------------------------------


def test_append_at_lands_every_event_where_it_is_told_or_writes_nothing() -> None:
    events = demo_events()
    store = EventStore(snapshot_policy=EveryNEvents(2))
    assert store.append_at(0, events[:3]) == [0, 1, 2]
    assert [r.event_type for r in store].count("snapshot-created") == 0  # no policy
    with pytest.raises(ConcurrencyError, match="holds 3 records") as error:
        store.append_at(2, events[3:5])
    assert (error.value.stream, error.value.expected, error.value.actual) == ("", 2, 3)
    with pytest.raises(ConcurrencyError, match="already in the log at offset 1"):
        store.append_at(3, [events[3], events[1]])
    assert len(store) == 3
    with pytest.raises(InvalidArgument):
        store.append_at(-1, events[3:4])
    assert store.append_at(3, []) == []
    assert store.append_at(3, events[3:5]) == [3, 4]


def test_append_at_is_refused_by_a_read_only_store() -> None:
    with EventStore(MemoryBackend(), read_only=True) as store, pytest.raises(StorageError):
        store.append_at(0, demo_events()[:1])


def test_an_export_line_written_from_the_stored_record_is_the_decoded_records() -> None:
    # ADR 0063: export writes lines from stored bytes, never decoding; the dict form (in
    # `chanlog demo --json`) dumps to the same bytes, its payload in canonical order.
    source = original()
    serializer = JsonSerializer()
    stored = list(source.backend.read(0, len(source)))
    for record, raw in zip(source.read_from(0), stored, strict=True):
        line = export_line_of(raw, canonical_payload(raw, serializer))
        assert line == orjson.dumps(export_line(record))
        assert orjson.loads(line)["payload"] == orjson.loads(raw.payload)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [(b"[1, 2]", "a JSON list, not an object"), (b'{"a": ', "unexpected end of data")],
)
def test_a_stored_payload_that_is_not_a_json_object_is_named_by_its_offset(
    payload: bytes, problem: str
) -> None:
    stored = StoredRecord(7, b"\x01" * 32, "tip-paid", (), payload, b"\x02" * 32)
    with pytest.raises(IntegrityError, match="offset 7: the stored tip-paid payload") as info:
        canonical_payload(stored, JsonSerializer())
    assert problem in str(info.value) and info.value.offset == 7
