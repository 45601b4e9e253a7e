"""The plugin host: runtime plugins, duplicates, entry points, allow/block lists."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from chanlog import Event, EventStore, PluginError, PluginHost, codec, fields, hookimpl
from chanlog.plugins import host as host_module
from chanlog.plugins import reset_default_host


@attrs.define(frozen=True, slots=True, kw_only=True)
class ChannelNoteAdded(Event):
    """A third-party event type: a free-text note on a channel."""

    event_type: ClassVar[str] = "channel-note-added"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)

    channel_id: str = attrs.field(validator=fields.bytes32)
    note: str = attrs.field(validator=fields.text(max_length=280))
    tip: int = attrs.field(default=0, validator=fields.amount, metadata=fields.AMOUNT)


class NotesPlugin:
    @hookimpl
    def chanlog_register_event_types(self, register: Callable[[type[Event]], None]) -> None:
        register(ChannelNoteAdded)


def test_runtime_plugin_contributes_an_event_type() -> None:
    host = PluginHost(load_entry_points=False)
    assert "channel-note-added" not in host.event_types
    host.register(NotesPlugin(), name="notes")
    assert host.event_types["channel-note-added"] is ChannelNoteAdded
    store = EventStore(plugins=host)  # built-in projections on: they ignore foreign types
    note = ChannelNoteAdded(channel_id="0x" + "ab" * 32, note="héllo", tip=2**200, timestamp_ms=9)
    assert store.append(note) == 0
    record = next(iter(store))
    assert record.event == note
    assert record.event_id == note.event_id
    assert [r.event for r in store.read_stream("0x" + "AB" * 32)] == [note]
    encoded = note.canonical_json()
    assert b'"tip":"' + str(2**200).encode() + b'"' in encoded
    assert "héllo".encode() in encoded  # raw UTF-8, not \u escapes
    assert codec.decode_event("channel-note-added", encoded, host.event_types) == note
    store.verify()
    # An envelope of the new type works too.
    second = {
        "type": "channel-note-added",
        "payload": {"channel_id": "0x" + "cd" * 32, "note": "n", "timestamp_ms": 1},
    }
    assert store.append(second) == 1
    assert ("notes", "event_types", "channel-note-added") in [
        (c.plugin, c.kind, c.name) for c in host.contributions()
    ]


def test_store_learns_a_type_registered_after_it_opened() -> None:
    host = PluginHost(load_entry_points=False)
    store = EventStore(plugins=host, projections=[])
    host.register(NotesPlugin(), name="notes")
    note = ChannelNoteAdded(channel_id="0x" + "ab" * 32, note="late", timestamp_ms=1)
    assert store.append(note) == 0
    assert next(iter(store)).event == note


def test_decoding_a_type_whose_plugin_is_gone_is_a_decode_error() -> None:
    from chanlog import DecodeError
    from chanlog.backends.memory import MemoryBackend

    host = PluginHost(load_entry_points=False)
    host.register(NotesPlugin(), name="notes")
    backend = MemoryBackend()
    store = EventStore(backend, plugins=host, projections=[])
    store.append(ChannelNoteAdded(channel_id="0x" + "ab" * 32, note="x", timestamp_ms=1))
    host.unregister("notes")
    with pytest.raises(DecodeError, match="not registered") as info:
        list(store.stream_events("0x" + "ab" * 32))  # the lean path reconstruction uses
    assert info.value.offset == 0
    with pytest.raises(DecodeError, match="not registered") as info:
        list(store)
    assert info.value.offset == 0
    with pytest.raises(PluginError):
        host.unregister("notes")


def test_duplicate_names_name_both_plugins() -> None:
    class Twin:
        @hookimpl
        def chanlog_register_event_types(self, register: Callable[[type[Event]], None]) -> None:
            register(ChannelNoteAdded)

    host = PluginHost(load_entry_points=False)
    host.register(NotesPlugin(), name="notes")
    with pytest.raises(PluginError) as info:
        host.register(Twin(), name="twin")
    message = str(info.value)
    assert "'channel-note-added'" in message and "'notes'" in message and "'twin'" in message
    assert "twin" not in host.plugin_names()  # refused whole

    class BackendClash:
        @hookimpl
        def chanlog_register_backends(self, register: Callable[[str, Any], None]) -> None:
            register("memory", dict)

    with pytest.raises(
        PluginError, match=r"'chanlog\.plugins\.builtin_storage' and by plugin 'clash'"
    ):
        host.register(BackendClash(), name="clash")


def test_bad_registrations() -> None:
    class NotAnEvent:
        @hookimpl
        def chanlog_register_event_types(self, register: Callable[[Any], None]) -> None:
            register(dict)

    class BadFactory:
        @hookimpl
        def chanlog_register_serializers(self, register: Callable[[Any, Any], None]) -> None:
            register("bad", 42)

    class BadName:
        @hookimpl
        def chanlog_register_projections(self, register: Callable[[Any, Any], None]) -> None:
            register("", dict)

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class Nameless(Event):
        pass

    class NamelessPlugin:
        @hookimpl
        def chanlog_register_event_types(self, register: Callable[[Any], None]) -> None:
            register(Nameless)

    for plugin, match in [
        (NotAnEvent(), "attrs subclass"),
        (BadFactory(), "callable"),
        (BadName(), "non-empty"),
        (NamelessPlugin(), "no event_type"),
    ]:
        host = PluginHost(load_entry_points=False)
        with pytest.raises(PluginError, match=match):
            host.register(plugin, name="bad")
    host = PluginHost(load_entry_points=False)
    plugin = NotesPlugin()
    host.register(plugin, name="notes")
    with pytest.raises(PluginError, match="cannot register"):
        host.register(plugin, name="notes")


def test_a_registered_name_holds_no_nul() -> None:
    """PostgreSQL's text cannot hold a NUL, and an event type's wire name, a projection's
    name (in a snapshot's versions) and a serializer's name (in the log's meta) are stored:
    every backend keeps the same rule, so a name holding one is refused where it is
    registered, naming it (ADR 0070)."""

    @attrs.define(frozen=True, slots=True, kw_only=True)
    class NulNamed(Event):
        event_type: ClassVar[str] = "note\x00added"

    class NulType:
        @hookimpl
        def chanlog_register_event_types(self, register: Callable[[Any], None]) -> None:
            register(NulNamed)

    class NulProjection:
        @hookimpl
        def chanlog_register_projections(self, register: Callable[[Any, Any], None]) -> None:
            register("fees\x00", dict)

    class NulSerializer:
        @hookimpl
        def chanlog_register_serializers(self, register: Callable[[Any, Any], None]) -> None:
            register("json\x00", dict)

    for plugin, name in [
        (NulType(), "'note\\x00added'"),
        (NulProjection(), "'fees\\x00'"),
        (NulSerializer(), "'json\\x00'"),
    ]:
        host = PluginHost(load_entry_points=False)
        with pytest.raises(PluginError) as info:
            host.register(plugin, name="nul")
        assert name in str(info.value)
        assert "NUL" in str(info.value)


def test_lookup_lists_installed_names() -> None:
    host = PluginHost(load_entry_points=False)
    assert host.lookup("backends", "memory") is not None
    with pytest.raises(PluginError, match=r"no backend named 'nope'; installed: .*memory"):
        host.lookup("backends", "nope")
    assert callable(host.hook.chanlog_store_opened)


@pytest.fixture
def fake_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Two importable third-party plugin modules exposed as `chanlog` entry points."""
    for name, wire in [("alpha", "alpha-happened"), ("beta", "beta-happened")]:
        (tmp_path / f"chanlog_test_{name}.py").write_text(
            "import attrs\n"
            "from typing import ClassVar\n"
            "from chanlog import Event, hookimpl\n"
            "@attrs.define(frozen=True, slots=True, kw_only=True)\n"
            f"class Happened(Event):\n    event_type: ClassVar[str] = {wire!r}\n"
            "@hookimpl\n"
            "def chanlog_register_event_types(register):\n    register(Happened)\n"
        )
    (tmp_path / "chanlog_test_broken.py").write_text("raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        EntryPoint(name="alpha", value="chanlog_test_alpha", group="chanlog"),
        EntryPoint(name="beta", value="chanlog_test_beta", group="chanlog"),
    ]
    monkeypatch.setattr(
        host_module, "entry_points", lambda group: points if group == "chanlog" else []
    )
    monkeypatch.delenv("CHANLOG_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("CHANLOG_DISABLE_PLUGINS", raising=False)
    yield ["alpha", "beta"]
    for name in ("alpha", "beta", "broken"):
        sys.modules.pop(f"chanlog_test_{name}", None)


def test_entry_points_are_loaded(fake_entry_points: list[str]) -> None:
    host = PluginHost()
    assert {"alpha", "beta"} <= set(host.plugin_names())
    assert {"alpha-happened", "beta-happened"} <= set(host.event_types)


def test_allow_list(fake_entry_points: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLOG_LOAD_PLUGINS", "beta")
    host = PluginHost()
    assert "alpha" not in host.plugin_names() and "beta" in host.plugin_names()
    monkeypatch.setenv("CHANLOG_LOAD_PLUGINS", "")
    assert not {"alpha", "beta"} & set(PluginHost().plugin_names())


def test_block_list(fake_entry_points: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLOG_DISABLE_PLUGINS", "alpha, gamma")
    host = PluginHost()
    assert "alpha" not in host.plugin_names() and "beta" in host.plugin_names()
    assert "alpha-happened" not in host.event_types


def test_broken_entry_point_is_a_plugin_error(
    fake_entry_points: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [EntryPoint(name="broken", value="chanlog_test_broken", group="chanlog")]
    monkeypatch.setattr(host_module, "entry_points", lambda group: broken)
    with pytest.raises(
        PluginError,
        match=r"'broken'.*failed to load: missing dependency; .*CHANLOG_DISABLE_PLUGINS=broken",
    ):
        PluginHost()
    monkeypatch.setenv("CHANLOG_DISABLE_PLUGINS", "broken")  # the advice the error gives
    assert "broken" not in PluginHost().plugin_names()


def test_default_host_is_shared_and_resettable(fake_entry_points: list[str]) -> None:
    from chanlog.plugins import default_host

    reset_default_host()
    try:
        first = default_host()
        assert default_host() is first
        assert "alpha" in first.plugin_names()
        reset_default_host()
        assert default_host() is not first
    finally:
        reset_default_host()


class _Recorder:
    """A minimal projection recording what the store hands it."""

    schema_version = 1

    def __init__(self, name: str, event_types: frozenset[type[Event]] | None) -> None:
        self.name = name
        self.event_types = event_types
        self.seen: list[str] = []

    def stage(self) -> Any:
        recorder = self

        class Stage:
            def apply(self, event: Event, offset: int) -> None:
                recorder.seen.append(event.event_type)

            def commit(self) -> None:
                pass

        return Stage()

    def get(self, entity_id: str) -> None:
        return None

    def entity_ids(self, event: Event) -> tuple[str, ...]:
        return ()

    def fold(self, state: Any, event: Event, entity_id: str, offset: int) -> None:
        return None

    def dump(self) -> dict[str, Any]:
        return {}

    def load(self, data: Any) -> None:
        pass

    def __len__(self) -> int:
        return 0


def test_events_are_routed_only_to_projections_that_declare_them() -> None:
    from chanlog import ObjectiveApproved, ObjectiveCreated

    picky = _Recorder("picky", frozenset({ObjectiveApproved}))
    everything = _Recorder("everything", None)

    class Projections:
        @hookimpl
        def chanlog_register_projections(self, register: Callable[[str, Any], None]) -> None:
            register("picky", lambda: picky)
            register("everything", lambda: everything)

    host = PluginHost(load_entry_points=False)
    host.register(Projections(), name="recorders")
    store = EventStore(plugins=host, projections=["picky", "everything"])
    objective = "0x" + "0a" * 32
    store.append(
        ObjectiveCreated(objective_id=objective, objective_type="DirectFund", timestamp_ms=1)
    )
    other = ObjectiveCreated(
        objective_id="0x" + "0b" * 32, objective_type="DirectFund", timestamp_ms=3
    )
    store.append_batch([ObjectiveApproved(objective_id=objective, timestamp_ms=2), other])
    assert picky.seen == ["objective-approved"]
    assert everything.seen == ["objective-created", "objective-approved", "objective-created"]
