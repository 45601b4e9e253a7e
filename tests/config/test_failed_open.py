"""An open that fails on a plugin (ADR 0066): what can be built without the log (the
serializer) is built before the backend creates it, so its failure creates nothing; a part
built on the store (a projection's or broker's factory, a ``chanlog_store_opened`` hook)
fails after the backend opened, and a log that open created stays, empty, for the next open
to use. Every failure is a ``PluginError`` naming the plugin, and a log that existed before
is left byte for byte."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import chanlog
from chanlog import ObjectiveCreated, PluginError
from chanlog.codec import to_payload
from installed_plugins import InstallPlugin, chanlog_cli, uninstall

FAULTS = {
    "serializer": (
        'serializer = "faulty"\n',
        """
import chanlog


def faulty():
    raise RuntimeError("no codec")


@chanlog.hookimpl
def chanlog_register_serializers(register):
    register("faulty", faulty)
""",
        "serializer 'faulty'",
    ),
    "projection": (
        "",
        """
import chanlog


def faulty():
    raise RuntimeError("no fold")


@chanlog.hookimpl
def chanlog_register_projections(register):
    register("faulty", faulty)
""",
        "projection 'faulty'",
    ),
    "broker": (
        '[bus]\nbroker = "faulty"\n',
        """
import chanlog


def faulty(context, **options):
    raise RuntimeError("no server")


@chanlog.hookimpl
def chanlog_register_brokers(register):
    register("faulty", faulty)
""",
        "broker 'faulty'",
    ),
    "backend": (
        "",
        """
import chanlog


def faulty(**options):
    raise RuntimeError("no disk")


@chanlog.hookimpl
def chanlog_register_backends(register):
    register("faulty", faulty)
""",
        "backend 'faulty'",
    ),
    # A TypeError raised inside a factory is the plugin's bug, not options the configuration
    # got wrong (it was reported as "options rejected by the backend", a ConfigError).
    "backend, a TypeError inside": (
        "",
        """
import chanlog


def faulty(**options):
    return len(None)


@chanlog.hookimpl
def chanlog_register_backends(register):
    register("faulty", faulty)
""",
        "backend 'faulty'",
    ),
    "snapshot policy": (
        '[snapshots]\npolicy = "faulty"\n',
        """
import chanlog


def faulty(**options):
    raise RuntimeError("no schedule")


@chanlog.hookimpl
def chanlog_register_snapshot_policies(register):
    register("faulty", faulty)
""",
        "snapshot policy 'faulty'",
    ),
    "opened hook": (
        "",
        """
import chanlog


@chanlog.hookimpl
def chanlog_store_opened(store):
    raise RuntimeError("no metrics server")
""",
        "chanlog_store_opened",
    ),
}

BACKEND = '[backend]\nname = "sqlite"\npath = "node.db"\n'
OBJECTIVE = ObjectiveCreated(
    objective_id="0x" + "0a" * 32, objective_type="DirectFund", timestamp_ms=1
)


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name != "site")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_open_that_fails_on_a_plugin_names_it(
    install_plugin: InstallPlugin, tmp_path: Path, fault: str
) -> None:
    settings, source, what = FAULTS[fault]
    site = install_plugin(source)
    config = tmp_path / "chanlog.toml"
    backend = BACKEND.replace('"sqlite"', '"faulty"') if fault.startswith("backend") else BACKEND
    config.write_text(settings + backend)
    with pytest.raises(PluginError, match=what) as info:
        chanlog.open(config)
    assert "plugin 'fault'" in str(info.value)
    # Built before the log: nothing created. Built on the store: the new log stays, empty.
    built_first = ("serializer", "backend", "snapshot policy")
    left = ["chanlog.toml"] if fault.startswith(built_first) else ["chanlog.toml", "node.db"]
    assert names(tmp_path) == left
    envelope = orjson.dumps({"type": "objective-created", "payload": to_payload(OBJECTIVE)})
    result = chanlog_cli("append", envelope.decode(), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert what in result.output and "Traceback" not in result.output
    assert names(tmp_path) == left
    uninstall(site)
    config.write_text(BACKEND)
    with chanlog.open(config) as store:  # the plugin fixed: the next open uses what is there
        store.append(OBJECTIVE)
        assert len(store) == 1 and store.verify() == 1


@pytest.mark.parametrize("fault", ["projection", "opened hook"])
@pytest.mark.parametrize("records", [0, 1])
def test_a_log_that_existed_before_the_failed_open_stays(
    install_plugin: InstallPlugin, tmp_path: Path, fault: str, records: int
) -> None:
    settings, source, what = FAULTS[fault]
    config = tmp_path / "chanlog.toml"
    config.write_text(settings + BACKEND)
    with chanlog.open(config) as store:  # before the faulty plugin is installed
        store.append_batch([OBJECTIVE][:records])
    before = (tmp_path / "node.db").read_bytes()
    site = install_plugin(source)
    with pytest.raises(PluginError, match=what):
        chanlog.open(config)
    assert names(tmp_path) == ["chanlog.toml", "node.db"] + ["node.db-head"] * records
    assert (tmp_path / "node.db").read_bytes() == before
    uninstall(site)
    with chanlog.open(config) as store:
        assert len(store) == records and store.verify() == records
