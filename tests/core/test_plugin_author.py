"""What a third-party plugin author hits, from an installed distribution. Every fault is a
:class:`~chanlog.errors.PluginError` naming the plugin, the name and the hook or protocol,
never a bare traceback, and nothing is half-written.

The plugin under test is a real distribution: a ``*.dist-info`` folder with an
``entry_points.txt`` in ``tmp_path``, on ``sys.path``, found by ``importlib.metadata`` the
way ``pip install`` makes it found (``installed_plugins``, fixture ``install_plugin``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import orjson
import pytest

import chanlog
from chanlog import Event, EventStore, PluginError, PluginHost, fields, hookimpl
from installed_plugins import CHANNEL, EVENT_MODULE, InstallPlugin, chanlog_cli, tip, uninstall

ETH = "0x" + "00" * 20


def test_a_registration_hook_that_raises_names_the_plugin_and_the_hook(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin(
        EVENT_MODULE
        + """
@chanlog.hookimpl
def chanlog_register_projections(register):
    raise RuntimeError("settings file missing")
"""
    )
    with pytest.raises(PluginError) as info:
        PluginHost()
    message = str(info.value)
    assert "'fault'" in message and "chanlog_register_projections" in message
    assert "RuntimeError: settings file missing" in message
    assert "CHANLOG_DISABLE_PLUGINS=fault" in message
    assert info.value.plugin == "fault"
    result = chanlog_cli("plugins", cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "chanlog_register_projections" in result.output


def test_a_name_clash_with_an_entry_point_says_how_to_run_without_it(
    install_plugin: InstallPlugin,
) -> None:
    install_plugin(
        EVENT_MODULE.replace('"tip-paid"', '"state-signed"').replace(
            '("channel_id",)', '("channel_id",)'
        )
    )
    with pytest.raises(PluginError) as info:
        PluginHost()
    message = str(info.value)
    assert "'state-signed'" in message and "'chanlog.plugins.builtin_events'" in message
    assert "'fault'" in message and "CHANLOG_DISABLE_PLUGINS=fault" in message


WRONG_TYPES = """
import chanlog


@chanlog.hookimpl
def chanlog_register_serializers(register):
    register("wrong-serializer", lambda: object())


@chanlog.hookimpl
def chanlog_register_snapshot_policies(register):
    register("wrong-policy", lambda **options: "every-n-events")


@chanlog.hookimpl
def chanlog_register_backends(register):
    register("wrong-backend", lambda **options: 42)


@chanlog.hookimpl
def chanlog_register_brokers(register):
    register("wrong-broker", lambda context, **options: 42)


@chanlog.hookimpl
def chanlog_register_handlers(register):
    register("wrong-handler", lambda **options: 42)
"""


@pytest.mark.parametrize(
    ("config", "what"),
    [
        ('serializer = "wrong-serializer"\n', "serializer 'wrong-serializer'"),
        ('[snapshots]\npolicy = "wrong-policy"\n', "snapshot policy 'wrong-policy'"),
        ('[backend]\nname = "wrong-backend"\n', "backend 'wrong-backend'"),
        ('[bus]\nbroker = "wrong-broker"\n', "broker 'wrong-broker'"),
    ],
)
def test_a_factory_returning_the_wrong_type_is_a_plugin_error(
    install_plugin: InstallPlugin, tmp_path: Path, config: str, what: str
) -> None:
    install_plugin(WRONG_TYPES)
    if "[backend]" not in config:
        config += '[backend]\nname = "memory"\n'
    (tmp_path / "chanlog.toml").write_text(config)
    with pytest.raises(PluginError) as info:
        chanlog.open(tmp_path / "chanlog.toml")
    message = str(info.value)
    assert what in message and "registered by plugin 'fault'" in message, message
    assert "lacks" in message or "not callable" in message, message
    result = chanlog_cli("append", tip(1), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert what in result.output


def test_a_handler_factory_returning_no_callable_is_refused_before_any_record(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin(WRONG_TYPES)
    (tmp_path / "chanlog.toml").write_text(
        '[backend]\nname = "sqlite"\npath = "node.db"\n'
        '[consumers.audit]\nhandler = "wrong-handler"\n'
    )
    from chanlog.bus.worker import Worker

    config = chanlog.load_config(tmp_path / "chanlog.toml")
    with (
        chanlog.open(tmp_path / "chanlog.toml") as store,
        pytest.raises(PluginError, match=r"handler 'wrong-handler'.*plugin 'fault'.*not callable"),
    ):
        Worker(store, store.bus, config.bus, store.plugins.handlers, {})


def test_a_projection_whose_fold_raises_writes_nothing_and_names_it(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin(
        EVENT_MODULE
        + """

class Boom:
    name = "boom"
    schema_version = 1

    def stage(self):
        projection = self

        class Stage:
            def apply(self, event, offset):
                for entity_id in projection.entity_ids(event):
                    projection.fold(None, event, entity_id, offset)

            def commit(self):
                pass

        return Stage()

    def get(self, entity_id):
        return None

    def entity_ids(self, event):
        return event.streams if event.event_type == "tip-paid" else ()

    def fold(self, state, event, entity_id, offset):
        return 1 // 0

    def dump(self):
        return {}

    def load(self, data):
        pass

    def __len__(self):
        return 0


@chanlog.hookimpl
def chanlog_register_projections(register):
    register("boom", Boom)
"""
    )
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    with chanlog.open(tmp_path / "chanlog.toml") as store:
        from chanlog_fault_plugin import TipPaid  # type: ignore[import-not-found]

        with pytest.raises(PluginError) as info:
            store.append_batch(
                [
                    chanlog.ObjectiveCreated(
                        objective_id="0x" + "aa" * 32, objective_type="DirectFund", timestamp_ms=1
                    ),
                    TipPaid(channel_id=CHANNEL, amount=1, timestamp_ms=2),
                ]
            )
        message = str(info.value)
        assert "projection 'boom'" in message and "plugin 'fault'" in message
        assert "tip-paid at offset 1" in message and "ZeroDivisionError" in message
        assert len(store) == 0  # the whole batch refused
    result = chanlog_cli("append", tip(1), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "projection 'boom'" in result.output and "Traceback" not in result.output


LIFECYCLE = """
import chanlog


@chanlog.hookimpl
def chanlog_store_opened(store):
    if store.backend.name == "memory":
        raise RuntimeError("cannot reach the metrics server")


@chanlog.hookimpl
def chanlog_store_closing():
    raise RuntimeError("flush failed")
"""


def test_lifecycle_hooks_that_raise_name_the_plugin_and_the_store_still_closes(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin(LIFECYCLE)
    with pytest.raises(
        PluginError, match=r"plugin 'fault': chanlog_store_opened raised RuntimeError"
    ):
        EventStore()
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    store = chanlog.open(tmp_path / "chanlog.toml")
    store.append(
        chanlog.ObjectiveCreated(
            objective_id="0x" + "aa" * 32, objective_type="DirectFund", timestamp_ms=1
        )
    )
    with pytest.raises(
        PluginError, match=r"plugin 'fault': chanlog_store_closing raised RuntimeError"
    ):
        store.close()
    assert store.closed  # closed all the same: the backend is released
    store.close()  # and closing again does not call the hooks again


def test_a_log_holding_events_of_an_uninstalled_plugin(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = install_plugin(EVENT_MODULE)
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    assert chanlog_cli("append", tip(1), tip(2, 2), cwd=tmp_path).exit_code == 0
    uninstall(site)
    result = chanlog_cli("verify", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    # What folds the log cannot fold a record no class decodes: refused, naming the type.
    # (`log` and `export` read records as stored: tests/cli/test_unregistered_types.py.)
    result = chanlog_cli("show", "channel", CHANNEL, cwd=tmp_path)
    assert result.exit_code != 0
    assert "'tip-paid' is not registered" in result.output
    assert "CHANLOG_DISABLE_PLUGINS" in result.output and "Traceback" not in result.output


class _Plain:
    @hookimpl
    def chanlog_register_event_types(self, register: Callable[[type[Event]], None]) -> None:
        register(_Tip)


@attrs.define(frozen=True, slots=True, kw_only=True)
class _Tip(Event):
    event_type: ClassVar[str] = "tip-paid"
    stream_fields: ClassVar[tuple[str, ...]] = ("channel_id",)
    channel_id: str = attrs.field(validator=fields.bytes32)


def test_built_ins_meet_the_checks() -> None:
    host = PluginHost(load_entry_points=False)
    host.register(_Plain(), name="plain")
    with EventStore(plugins=host, snapshot_policy="every-n-events") as store:
        store.append(_Tip(channel_id=CHANNEL, timestamp_ms=1))
    for kind, name in [("serializers", "json"), ("snapshot_policies", "never")]:
        value: Any = host.lookup(kind, name)()
        assert host.checked(kind, name, value) is value


TIPS = (
    EVENT_MODULE
    + """

class TipsStage:
    def __init__(self, projection):
        self.projection = projection
        self.pending = {}

    def apply(self, event, offset):
        for channel in self.projection.entity_ids(event):
            current = self.pending.get(channel, self.projection.get(channel))
            self.pending[channel] = self.projection.fold(current, event, channel, offset)

    def commit(self):
        self.projection.totals.update(self.pending)


class Tips:
    name = "tips"
    schema_version = 1

    def __init__(self):
        self.totals = {}

    def stage(self):
        return TipsStage(self)

    def get(self, entity_id):
        return self.totals.get(entity_id.lower())

    def entity_ids(self, event):
        return event.streams if isinstance(event, TipPaid) else ()

    def fold(self, state, event, entity_id, offset):
        return (state or 0) + event.amount

    def dump(self):
        return {channel: str(total) for channel, total in self.totals.items()}

    def load(self, data):
        self.totals = {channel: int(total) for channel, total in data.items()}

    def __len__(self):
        return len(self.totals)


@chanlog.hookimpl
def chanlog_register_projections(register):
    register("tips", Tips)
"""
)


def test_chanlog_show_prints_a_projection_state_that_is_not_a_mapping(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    install_plugin(TIPS)  # the guide's projection shape: the state is a plain int
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    assert chanlog_cli("append", tip(5), tip(7, 2), cwd=tmp_path).exit_code == 0
    result = chanlog_cli("show", "tips", CHANNEL, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "12" in result.output and "Traceback" not in result.output
    result = chanlog_cli("show", "tips", CHANNEL, "--at", "1", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "5" in result.output and "before offset 1" in result.output
    result = chanlog_cli("show", "tips", CHANNEL, "--json", cwd=tmp_path)
    assert orjson.loads(result.output)["state"] == 12
