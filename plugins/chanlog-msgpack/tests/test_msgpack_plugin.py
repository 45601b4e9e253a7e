"""chanlog-msgpack: the serializer, its registration through the entry point, and a log
stored as msgpack that round-trips and verifies like a JSON one."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest
from chanlog_msgpack import MsgpackSerializer
from hypothesis import given
from hypothesis import strategies as st

import chanlog
from chanlog import ConfigError, DecodeError, IntegrityError, InvalidEvent, PluginHost
from chanlog.codec import canonical_json, canonical_json_of_payload, to_payload
from chanlog.config import open_store
from chanlog.workload import Workload, WorkloadConfig

ROUND_TRIP_EVENTS = 10_000


def test_registered_through_the_chanlog_entry_point() -> None:
    host = PluginHost()
    assert isinstance(host.lookup("serializers", "msgpack")(), MsgpackSerializer)
    owners = {(c.kind, c.name): c.plugin for c in host.contributions()}
    assert owners[("serializers", "msgpack")] == "msgpack"
    assert "msgpack" in host.plugin_names()


def test_disabled_plugin_is_a_config_error_naming_the_installed_serializers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHANLOG_DISABLE_PLUGINS", "msgpack")
    host = PluginHost()
    assert "msgpack" not in host.serializers
    config = tmp_path / "chanlog.toml"
    config.write_text('serializer = "msgpack"\n[backend]\nname = "memory"\n')
    with pytest.raises(ConfigError) as caught:
        open_store(config, plugins=host)
    assert caught.value.key == "serializer"
    message = str(caught.value)
    assert "serializer = 'msgpack': no such serializer" in message
    assert "(allowed: json)" in message
    assert message.startswith(str(config))


def test_payloads_round_trip_exactly() -> None:
    serializer = MsgpackSerializer()
    assert (serializer.name, serializer.canonical) == ("msgpack", False)
    for event in Workload(WorkloadConfig(channels=2, turns=3)):
        payload = to_payload(event)
        packed = serializer.dumps(payload)
        assert not packed.startswith(b"{")
        assert serializer.loads(packed) == payload
        assert canonical_json_of_payload(serializer.loads(packed)) == canonical_json(event)


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.text(), st.integers(0, 2**64 - 1), st.booleans(), st.lists(st.text(), max_size=4)
        ),
        max_size=6,
    )
)
def test_any_payload_shaped_dict_round_trips(payload: dict[str, object]) -> None:
    serializer = MsgpackSerializer()
    assert serializer.loads(serializer.dumps(payload)) == payload


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xc1", "not valid msgpack"),
        (b"", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a msgpack map"),
        (msgpack.packb({1: "a"}), "not valid msgpack"),  # strict_map_key refuses int keys
        (msgpack.packb({b"k": "a"}, use_bin_type=True), "non-string key"),
        (msgpack.packb({"a": 1}) + b"\x01", "not valid msgpack"),
    ],
)
def test_bad_bytes_are_decode_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=fragment):
        MsgpackSerializer().loads(data)


def test_unpackable_payload_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="msgpack cannot store"):
        MsgpackSerializer().dumps({"amount": 2**70})


def test_ten_thousand_generated_events_round_trip(tmp_path: Path) -> None:
    events = list(itertools.islice(Workload(WorkloadConfig(channels=60, turns=50)), 20_000))
    events = events[:ROUND_TRIP_EVENTS]
    assert len(events) == ROUND_TRIP_EVENTS
    config = tmp_path / "chanlog.toml"
    config.write_text(
        'serializer = "msgpack"\n\n[backend]\nname = "sqlite"\npath = "log.db"\n'
        'durability = "normal"\n\n[snapshots]\npolicy = "never"\n'
    )
    with open_store(config) as store:
        assert store.serializer.name == "msgpack"
        for start in range(0, ROUND_TRIP_EVENTS, 2000):
            store.append_batch(events[start : start + 2000])
    with chanlog.EventStore() as json_store:
        json_offsets = json_store.append_batch(events)
        json_head = json_store.backend.head()
    with open_store(config) as reopened:
        assert len(reopened) == ROUND_TRIP_EVENTS
        assert reopened.verify() == ROUND_TRIP_EVENTS
        records = list(reopened.read_from(0))
        assert [record.event for record in records] == events
        assert [record.event_id for record in records] == [event.event_id for event in events]
        assert [record.offset for record in records] == json_offsets
        # Same ids, same chain: the serializer changes only the bytes at rest.
        assert reopened.backend.head() == json_head
    with sqlite3.connect(tmp_path / "log.db") as connection:
        (payload,) = connection.execute("SELECT payload FROM events WHERE position = 0").fetchone()
    assert msgpack.unpackb(payload) == to_payload(events[0])


def test_a_payload_edited_at_rest_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    events = list(itertools.islice(Workload(WorkloadConfig(channels=1, turns=2)), 10))
    with open_store(backend={"name": "sqlite", "path": str(path)}, serializer="msgpack") as store:
        store.append_batch(events)
    forged = dict(to_payload(events[3]), timestamp_ms=1)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE events SET payload = ? WHERE position = 3", (msgpack.packb(forged),)
        )
    with (
        open_store(
            backend={"name": "sqlite", "path": str(path)}, serializer="msgpack", projections=[]
        ) as store,
        pytest.raises(IntegrityError) as caught,
    ):
        store.verify()
    assert caught.value.offset == 3
