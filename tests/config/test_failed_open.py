"""An open that fails on a plugin leaves no new log behind (ADR 0064): what can be built
without the log (the serializer) is built before the backend creates it, and when a part
built on the store fails (a projection's or broker's factory, a ``chanlog_store_opened``
hook) the SQLite file this open created is removed. A file that existed before is never
removed, nor one another handle wrote to or holds open."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

import chanlog
from chanlog import ObjectiveCreated, PluginError
from chanlog.backends.sqlite import SqliteBackend
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
def test_an_open_that_fails_on_a_plugin_creates_no_log(
    install_plugin: InstallPlugin, tmp_path: Path, fault: str
) -> None:
    settings, source, what = FAULTS[fault]
    install_plugin(source)
    config = tmp_path / "chanlog.toml"
    config.write_text(settings + BACKEND)
    with pytest.raises(PluginError, match=what) as info:
        chanlog.open(config)
    assert "plugin 'fault'" in str(info.value)
    assert names(tmp_path) == ["chanlog.toml"]
    envelope = orjson.dumps({"type": "objective-created", "payload": to_payload(OBJECTIVE)})
    result = chanlog_cli("append", envelope.decode(), cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert what in result.output and "Traceback" not in result.output
    assert names(tmp_path) == ["chanlog.toml"]


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


def test_a_created_file_is_removed_only_as_created(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    # Nothing else touched it: removed, with nothing beside it.
    assert SqliteBackend(path).discard_created() is True
    assert names(tmp_path) == []
    # Another handle holds it open (its side files are there): kept.
    created, other = SqliteBackend(path), SqliteBackend(path)
    assert created.discard_created() is False
    other.close()
    assert path.exists()
    # A file that existed before this handle opened it: kept.
    assert SqliteBackend(path).discard_created() is False
    assert path.exists()
    path.unlink()
    # Another handle wrote a record to it and closed: kept.
    created = SqliteBackend(path)
    with chanlog.EventStore(SqliteBackend(path)) as writer:
        writer.append(OBJECTIVE)
    assert created.discard_created() is False
    with chanlog.EventStore(SqliteBackend(path)) as reader:
        assert len(reader) == 1
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    # Replaced by another file under the same name: kept.
    created = SqliteBackend(path)
    spare = tmp_path / "spare.db"
    SqliteBackend(spare).close()
    shutil.copyfile(spare, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", path)
    assert created.discard_created() is False
    assert path.exists()
