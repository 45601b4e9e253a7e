"""Regression tests for issue 13, defect 7 (found by an outside fuzzer), and for the escapes
this directory's fuzz suite found: each specific input, the chanlog error it must raise, and
what that error names."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import attrs
import pytest

import chanlog
from chanlog import codec, fields
from chanlog.backends.sqlite import SqliteBackend
from chanlog.backends.sqlite_schema import head_of
from chanlog.errors import ChanlogError, ConfigError, IntegrityError, InvalidEvent, StorageError
from chanlog.events import Event, MessageAcked, MessageSent, ObjectiveCranked, ObjectiveRejected
from chanlog.plugins import default_host
from chanlog.snapshots import open_snapshot
from chanlog.testing import sample_events
from chanlog.testing.events import bytes32_of
from fuzz.fuzz_helpers import objectives_of_samples
from sqlite_edits import edit_database

ID = bytes32_of("defect 7")
SURROGATES = ["\udc80", "p\u00e4r\udc80", "\ud800", "ok\udfff"]
TEXT_RULE = "valid Unicode text (no lone surrogates)"

# -- lone surrogates in text fields, refused at construction -----------------------------


def _attrs_init(cls: type[Event], **kwargs: Any) -> Event:
    """Construct through attrs' own ``__init__`` (each validator called as attrs calls it)
    rather than the generated one."""
    bare = object.__new__(cls)
    # set on the generated __init__ by chanlog.events._fastinit, unknown to its type
    cls.__init__.__chanlog_attrs_init__(bare, **kwargs)  # type: ignore[attr-defined]
    return bare


CASES = [
    (MessageAcked, "peer_id", {"message_id": ID, "roundtrip_ms": 1, "timestamp_ms": 1}),
    (ObjectiveRejected, "error_code", {"objective_id": ID, "reason": "no", "timestamp_ms": 1}),
    (ObjectiveRejected, "reason", {"objective_id": ID, "timestamp_ms": 1}),
    (ObjectiveCranked, "waiting", {"objective_id": ID, "side_effects_count": 0}),
    (
        MessageSent,
        "payload_type",
        {"message_id": ID, "peer_id": "p", "objective_id": ID, "timestamp_ms": 1},
    ),
]


@pytest.mark.parametrize("text", SURROGATES, ids=repr)
@pytest.mark.parametrize(("cls", "field", "others"), CASES, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("init", ["generated", "attrs"])
def test_a_lone_surrogate_is_refused_at_construction(
    cls: type[Event], field: str, others: dict[str, Any], text: str, init: str
) -> None:
    kwargs = {**others, field: text}
    with pytest.raises(InvalidEvent) as error:
        cls(**kwargs) if init == "generated" else _attrs_init(cls, **kwargs)
    assert error.value.field == field
    assert error.value.rule == TEXT_RULE
    assert f"{cls.event_type}.{field}" in str(error.value)
    assert "lone surrogates" in str(error.value)


def test_valid_non_ascii_text_is_still_accepted_and_encodes() -> None:
    event = MessageAcked(message_id=ID, peer_id="pär 🙂 \U0010ffff", timestamp_ms=1)
    assert event.event_id.startswith("0x")
    assert (
        codec.decode_event("message-acked", event.canonical_json(), default_host().event_types)
        == event
    )


def test_the_length_rule_is_still_the_first_one_named() -> None:
    with pytest.raises(InvalidEvent) as error:
        MessageAcked(message_id=ID, peer_id="", timestamp_ms=1)
    assert error.value.rule == "a string of 1..256 characters"
    with pytest.raises(InvalidEvent) as error:
        MessageAcked(message_id=ID, peer_id=7, timestamp_ms=1)  # type: ignore[arg-type]
    assert error.value.rule == "a string of 1..256 characters"


def test_evolve_and_decode_refuse_a_surrogate_too() -> None:
    event = MessageAcked(message_id=ID, peer_id="peer", timestamp_ms=1)
    with pytest.raises(InvalidEvent, match="lone surrogates"):
        attrs.evolve(event, peer_id="\udc80")
    payload = {**codec.to_payload(event), "peer_id": "\udc80"}
    with pytest.raises(chanlog.DecodeError, match="lone surrogates") as error:
        codec.from_payload(MessageAcked, payload)
    assert error.value.path == "peer_id"


def test_append_of_an_envelope_with_a_surrogate_is_refused_and_writes_nothing() -> None:
    sample = sample_events(1)[0]
    payload = {**codec.to_payload(sample), "peer_id": "\udc80"}
    with chanlog.EventStore(projections=[]) as store:
        with pytest.raises(InvalidEvent, match="lone surrogates"):
            store.append_batch([{"type": "message-sent", "payload": payload}])
        assert len(store) == 0


def test_text_validators_accept_and_refuse_alike() -> None:
    check = fields.text(min_length=1, max_length=8)
    assert check.accepts("pär")  # type: ignore[attr-defined]
    assert not check.accepts("\udc80")  # type: ignore[attr-defined]
    assert not fields.optional(check).accepts("\udc80")  # type: ignore[attr-defined]
    assert fields.optional(check).accepts(None)  # type: ignore[attr-defined]


def test_one_of_refuses_choices_no_event_could_carry() -> None:
    with pytest.raises(ValueError, match="valid Unicode"):
        fields.one_of("fine", "\udc80")
    assert fields.one_of("fine").accepts("fine")  # type: ignore[attr-defined]


# -- damaged SQLite files ------------------------------------------------------------------


# The log of the file tests: the samples' objectives, then SAMPLES sample messages (each
# of a message stream and an objective stream). The last offset is LAST.
OBJECTIVES = objectives_of_samples()
SAMPLES = sample_events(40)
LAST = len(OBJECTIVES) + len(SAMPLES) - 1


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    with chanlog.EventStore(SqliteBackend(path)) as store:
        store.append_batch([*OBJECTIVES, *SAMPLES])
    return path


def test_a_changed_byte_in_the_schema_page(log_file: Path) -> None:
    """Issue 13 defect 7: a table name in the schema page that is no longer UTF-8 made
    ``SqliteBackend(path)`` raise UnicodeDecodeError."""
    data = bytearray(log_file.read_bytes())
    data[data.index(b"tablesnapshotssnapshots") + len(b"table")] = 0xFF
    log_file.write_bytes(bytes(data))
    with pytest.raises(StorageError) as error:
        SqliteBackend(log_file)
    message = str(error.value)
    assert str(log_file) in message
    assert "not UTF-8" in message and "changed outside chanlog" in message
    assert log_file.read_bytes() == bytes(data)  # refused untouched


@pytest.mark.parametrize(
    "last",
    [
        (b"\x00" * 8, b"\x01" * 32),
        (5, 7),
        (5, "text"),
        (5, b"short"),
        (-1, b"\x01" * 32),
        (None, None),
    ],
)
def test_head_of_a_damaged_last_row(last: tuple[Any, Any], tmp_path: Path) -> None:
    """Issue 13 defect 7: ``head_of`` raised TypeError (can't concat int to bytes)."""
    with pytest.raises(StorageError, match="changed outside chanlog"):
        head_of(last)
    with pytest.raises(StorageError, match=str(tmp_path)):
        head_of(last, tmp_path / "log.db")


def test_head_of_a_good_row() -> None:
    assert head_of((4, b"\x02" * 32)) == chanlog.Head(5, b"\x02" * 32)
    assert head_of(None).length == 0


def test_a_last_row_whose_chain_hash_became_an_integer(log_file: Path) -> None:
    edit_database(log_file, f"UPDATE events SET chain_hash = 12345 WHERE position = {LAST}")
    with pytest.raises(StorageError, match="changed outside chanlog"):
        chanlog.EventStore(SqliteBackend(log_file))


def test_a_damaged_last_row_names_the_file(log_file: Path) -> None:
    """Fails today: sqlite.py's head(), write transaction and stream_version call
    ``head_of(row)`` without the path (they should pass ``self.path``)."""
    edit_database(log_file, f"UPDATE events SET chain_hash = 12345 WHERE position = {LAST}")
    with pytest.raises(StorageError, match=str(log_file)):
        chanlog.EventStore(SqliteBackend(log_file))


def _read_fails_at(path: Path, position: int, *fragments: str) -> None:
    with chanlog.EventStore(SqliteBackend(path), projections=[]) as store:
        for action in (lambda: list(store.read_from(0)), store.verify):
            with pytest.raises(IntegrityError) as error:
                action()
            assert error.value.offset == position
            message = str(error.value)
            assert f"offset {position}" in message
            assert "changed outside chanlog" in message
            for fragment in fragments:
                assert fragment in message


@pytest.mark.parametrize(
    ("streams", "fragment"),
    [
        ('["0x12', "do not parse"),
        ("{}", "not a list"),
        ("[1, 2]", "not all strings"),
        ("5", "not a list"),
    ],
)
def test_damaged_streams_json(log_file: Path, streams: str, fragment: str) -> None:
    """Issue 13 defect 7: damaged ``streams`` made reads and verify() raise
    orjson.JSONDecodeError."""
    edit_database(log_file, f"UPDATE events SET streams = '{streams}' WHERE position = 17")
    _read_fails_at(log_file, 17, fragment)
    sample = SAMPLES[17 - len(OBJECTIVES)]
    objective, message = sample.objective_id, sample.message_id
    with chanlog.EventStore(SqliteBackend(log_file), projections=[]) as store:
        for stream in (objective, message):
            with pytest.raises(IntegrityError) as error:
                list(store.read_stream(stream))
            assert error.value.offset == 17
        assert store.stream_version(message) == 1


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("payload", "12345", "payload is int, not bytes"),
        ("payload", "'{}'", "payload is str, not bytes"),
        ("event_id", "7", "event_id is int, not bytes"),
        ("event_id", "'0xab'", "event_id is str, not bytes"),
        ("event_type", "X'6d6573'", "event_type is bytes, not str"),
        ("chain_hash", "'abc'", "chain_hash is str, not bytes"),
        ("chain_hash", "1.5", "chain_hash is float, not bytes"),
        ("stream", "X'00'", "stream is bytes, not str"),
        ("streams", "X'5b5d'", "streams is bytes, not str"),
    ],
)
def test_a_column_of_the_wrong_type(log_file: Path, column: str, value: str, fragment: str) -> None:
    """A row whose column changed type (a flipped byte can turn a blob into an int or
    text) is refused at its offset, instead of making a record that blows up later."""
    edit_database(log_file, f"UPDATE events SET {column} = {value} WHERE position = 9")
    _read_fails_at(log_file, 9, fragment)


def test_a_damaged_row_refuses_the_open_of_a_folding_store(log_file: Path) -> None:
    edit_database(log_file, "UPDATE events SET payload = 1 WHERE position = 3")
    with pytest.raises(IntegrityError) as error:
        chanlog.EventStore(SqliteBackend(log_file))
    assert error.value.offset == 3


def test_a_schema_row_with_a_unicode_digit_stream_index_block(log_file: Path) -> None:
    """``stream_index_block`` took "²" for a number (str.isdigit) and int() then failed."""
    edit_database(log_file, "UPDATE chanlog_meta SET value = '²' WHERE key = 'stream_index_block'")
    with pytest.raises(StorageError, match="stream_index_block"):
        SqliteBackend(log_file)


# -- found by the fuzz suite, to be fixed outside this change's files ----------------------


@pytest.mark.parametrize("versions", ["[]", "5", '"text"'])
def test_a_snapshot_row_whose_versions_are_not_an_object(log_file: Path, versions: str) -> None:
    """Fails today: ``SqliteBackend.latest_snapshot`` hands out any JSON as ``versions`` and
    ``SnapshotManager.candidates`` calls ``.get`` on it (AttributeError)."""
    with chanlog.EventStore(SqliteBackend(log_file)) as store:
        store.snapshot()
    edit_database(log_file, f"UPDATE snapshots SET versions = '{versions}'")
    try:
        with chanlog.EventStore(SqliteBackend(log_file)) as store:
            store.reconstruct("messages", SAMPLES[0].message_id, at=len(OBJECTIVES) + 2)
    except ChanlogError:
        pass


def test_open_snapshot_with_versions_that_are_not_a_mapping() -> None:
    """Fails today: ``open_snapshot`` calls ``snapshot.versions.items()`` unchecked."""
    with chanlog.EventStore() as store:
        store.append_batch([*OBJECTIVES, *SAMPLES[:3]])
        snapshot = store.snapshot()
    damaged = chanlog.StoredSnapshot(snapshot.offset, [], snapshot.data, snapshot.snapshot_hash)  # type: ignore[arg-type]
    with pytest.raises(chanlog.DecodeError):
        open_snapshot(damaged)


@pytest.mark.parametrize("name", ["log\x00.db", "\ud800.db"], ids=["nul", "surrogate"])
def test_an_sqlite_path_no_file_can_have(tmp_path: Path, name: str) -> None:
    """Fails today: ``SqliteBackend`` lets ValueError / UnicodeEncodeError out (from
    sqlite3.connect and from the cleanup in ``create_database``)."""
    with pytest.raises(ChanlogError):
        SqliteBackend(str(tmp_path / name))
    with pytest.raises(ConfigError):
        chanlog.open(backend={"name": "sqlite", "path": str(tmp_path / name)})


# -- the postgres plugin -----------------------------------------------------------------


@pytest.mark.parametrize("versions", [["not", "an object"], {"channel": "one"}, 5])
def test_postgres_snapshot_row_with_damaged_versions(versions: Any) -> None:
    """jsonb ``versions`` edited outside chanlog: a StorageError, not AttributeError or
    ValueError (checked without a server: only the row decoding is under test)."""
    plugin = pytest.importorskip("chanlog_postgres.backend")
    backend = object.__new__(plugin.PostgresBackend)
    backend._where = "postgres test"
    backend._sql = types.SimpleNamespace(latest_snapshot="SELECT")
    backend._fetch = lambda action, query, params: [(3, versions, b"data", b"hash")]
    with pytest.raises(StorageError, match="snapshot at offset 3 has unreadable versions"):
        backend.latest_snapshot()
