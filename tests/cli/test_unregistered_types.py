"""A log holding records of a type no installed plugin registers (the plugin that defined
``tip-paid`` was uninstalled): ``export`` writes them as it would with the plugin, byte for
byte; ``import`` of that export where the plugin is installed gives the same log, and where
it is not is refused at the record's line; ``log`` lists them, marked, with their stored
payload (ADR 0063). What folds the log stays refused
(``tests/core/test_plugin_author.py::test_a_log_holding_events_of_an_uninstalled_plugin``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chanlog.cli.errors import ExitCode
from installed_plugins import (
    CHANNEL,
    EVENT_MODULE,
    InstallPlugin,
    chanlog_cli,
    install_into,
    tip,
    uninstall,
)
from sqlite_edits import edit_database

OBJECTIVE = "0x" + "0b" * 32


def objective(kind: str, timestamp_ms: int) -> str:
    payload: dict[str, object] = {"objective_id": OBJECTIVE, "timestamp_ms": timestamp_ms}
    if kind == "objective-created":
        payload["objective_type"] = "DirectFund"
    if kind == "objective-completed":
        payload["success"] = True
    return orjson.dumps({"type": kind, "payload": payload}).decode()


def tipped_log(install_plugin: InstallPlugin, tmp_path: Path, settings: str = "") -> Path:
    """``tmp_path/chanlog.toml``'s SQLite log of four records, two of them tips (offsets 1
    and 2), appended with the plugin installed; returns the plugin's site folder."""
    site = install_plugin(EVENT_MODULE)
    config = settings + '[backend]\nname = "sqlite"\npath = "node.db"\n'
    (tmp_path / "chanlog.toml").write_text(config)
    events = [
        objective("objective-created", 1),
        tip(1, 2),
        tip(2, 3),
        objective("objective-approved", 4),
    ]
    result = chanlog_cli("append", *events, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    return site


def ok(*args: str, cwd: Path) -> bytes:
    result = chanlog_cli(*args, cwd=cwd)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def head_of(*args: str, cwd: Path) -> str:
    """``OFFSET:HASH`` of the log, as ``chanlog verify`` proves it."""
    report = orjson.loads(ok(*args, "verify", "--json", cwd=cwd))
    assert report["ok"] is True, report
    head: str = report["head"]
    return head


def test_an_export_is_the_same_whatever_plugins_are_installed(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    with_plugin = ok("export", cwd=tmp_path)
    uninstall(site)
    without = ok("export", cwd=tmp_path)
    assert without == with_plugin  # byte for byte
    ok("export", "backup.jsonl", cwd=tmp_path)
    assert (tmp_path / "backup.jsonl").read_bytes() == with_plugin
    lines = [orjson.loads(line) for line in without.splitlines()]
    assert [line["offset"] for line in lines] == [0, 1, 2, 3]
    assert lines[1]["type"] == "tip-paid"
    assert lines[1]["payload"] == {
        "amount": "1",
        "channel_id": CHANNEL,
        "event_version": 1,
        "timestamp_ms": 2,
    }


def test_the_export_imported_where_the_plugin_is_installed_is_the_same_log(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    head = head_of(cwd=tmp_path)
    uninstall(site)
    ok("export", "backup.jsonl", cwd=tmp_path)
    exported = (tmp_path / "backup.jsonl").read_bytes()
    install_plugin(EVENT_MODULE)
    summary = orjson.loads(ok("--db", "copy.db", "import", "--json", "backup.jsonl", cwd=tmp_path))
    assert summary["appended"] == 4 and summary["exact_copy"] is True
    assert head_of("--db", "copy.db", cwd=tmp_path) == head
    ok("--db", "copy.db", "verify", "--expect-head", head, cwd=tmp_path)
    assert ok("--db", "copy.db", "export", cwd=tmp_path) == exported


def test_an_import_where_the_plugin_is_missing_is_refused_at_the_records_line(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    head = head_of(cwd=tmp_path)
    uninstall(site)
    ok("export", "backup.jsonl", cwd=tmp_path)
    result = chanlog_cli("--db", "copy.db", "import", "backup.jsonl", cwd=tmp_path)
    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "backup.jsonl:2: event type 'tip-paid' is not registered" in result.stderr
    assert "install the plugin" in result.stderr and "Traceback" not in result.output
    assert ok("--db", "copy.db", "log", cwd=tmp_path) == b""  # nothing was written
    # Batches before the refused one stay: a beginning of the export, which the same
    # import goes on from once the plugin is installed.
    args = ("--db", "part.db", "import", "--batch-size", "1", "backup.jsonl")
    result = chanlog_cli(*args, cwd=tmp_path)
    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "backup.jsonl:2:" in result.stderr
    assert len(ok("--db", "part.db", "log", "--json", cwd=tmp_path).splitlines()) == 1
    install_plugin(EVENT_MODULE)
    ok(*args, cwd=tmp_path)
    assert head_of("--db", "part.db", cwd=tmp_path) == head


def test_log_lists_records_of_an_unregistered_type_marked_with_their_payload(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    uninstall(site)
    result = chanlog_cli("log", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == 5  # the header and four records
    assert "objective-created" in rows[1] and "unregistered" not in rows[1]
    assert rows[2].split()[:3] == ["1", "tip-paid", "1970-01-01T00:00:00.002Z"]
    assert rows[2].endswith(
        'unregistered type, stored payload: {"amount":"1","channel_id":"'
        + CHANNEL
        + '","event_version":1,"timestamp_ms":2}'
    )
    assert "0xcccccc…cccc" in rows[2]  # its entity, as the log files it
    assert "tip-paid (2)" in result.stderr and "install the plugin" in result.stderr
    # --json: the lines export writes, the unregistered ones marked.
    exported = ok("export", cwd=tmp_path).splitlines()
    logged = ok("log", "--json", cwd=tmp_path).splitlines()
    assert logged[0] == exported[0] and logged[3] == exported[3]
    for offset in (1, 2):
        assert logged[offset] == exported[offset][:-1] + b',"unregistered":true}'
    # Selected by entity (through the stream index) and by a registered type.
    by_entity = ok("log", "--json", "--entity", CHANNEL, cwd=tmp_path).splitlines()
    assert [orjson.loads(line)["offset"] for line in by_entity] == [1, 2]
    by_type = ok("log", "--json", "--type", "objective-approved", cwd=tmp_path).splitlines()
    assert by_type == [exported[3]]


def append_with_the_plugin(site: Path, cwd: Path, *events: str) -> None:
    """``chanlog append EVENTS`` in another process that has the plugin (installed in
    ``site``, a folder this process does not import from)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    environment["PYTHONPATH"] = str(site)
    script = "from chanlog.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", script, "append", *events],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_log_follow_prints_them_as_another_process_appends_them(
    install_plugin: InstallPlugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower has no plugin; another process that has it appends a tip, then a
    registered record: both are printed, the tip marked (a follow that decoded what it
    was handed stopped at the tip, and printed nothing after it)."""
    from chanlog.cli.commands import log as log_module

    site = tipped_log(install_plugin, tmp_path)
    uninstall(site)
    (tmp_path / "elsewhere").mkdir()
    elsewhere = install_into(tmp_path / "elsewhere", EVENT_MODULE)
    waits: list[int] = []

    def appended_elsewhere(backend: object, length: int) -> None:
        waits.append(length)
        if len(waits) == 1:
            append_with_the_plugin(
                elsewhere, tmp_path, tip(7, 5), objective("objective-completed", 6)
            )
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(log_module, "_wait_for_appends", appended_elsewhere)
    result = chanlog_cli("log", "--follow", "--json", "--from", "1", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    logged = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(line["offset"], line.get("unregistered", False)) for line in logged] == [
        (1, True),
        (2, True),
        (3, False),
        (4, True),
        (5, False),
    ]
    assert logged[3]["payload"]["amount"] == "7"
    assert waits == [4, 6]
    assert result.stderr.count("tip-paid") == 1  # the note names a type once


def test_log_type_selects_an_unregistered_type_the_log_holds(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    uninstall(site)
    by_type = ok("log", "--json", "--type", "tip-paid", cwd=tmp_path).splitlines()
    assert [orjson.loads(line)["offset"] for line in by_type] == [1, 2]
    # A type neither registered nor found is refused as a typo, after the read.
    for args in (("--type", "tip-payed"), ("--type", "tip-paid", "--from", "3")):
        result = chanlog_cli("log", *args, cwd=tmp_path)
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "no installed plugin registers it and no record read is of it" in result.stderr
    # A read cut short by --limit proves nothing about the types it did not reach.
    limited = ok(
        "log",
        "--json",
        "--type",
        "objective-created",
        "--type",
        "tip-payed",
        "--limit",
        "1",
        cwd=tmp_path,
    )
    assert [orjson.loads(line)["offset"] for line in limited.splitlines()] == [0]


def test_the_export_of_a_log_stored_with_another_serializer_is_the_same(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    pytest.importorskip("chanlog_msgpack")
    json_log, msgpack_log = tmp_path / "json", tmp_path / "msgpack"
    json_log.mkdir()
    msgpack_log.mkdir()
    tipped_log(install_plugin, json_log)
    site = tipped_log(install_plugin, msgpack_log, 'serializer = "msgpack"\n')
    uninstall(site)
    exported = ok("export", cwd=msgpack_log)
    assert exported == ok("export", cwd=json_log)
    assert ok("log", "--json", cwd=msgpack_log).count(b'"unregistered":true') == 2


def test_stats_counts_what_it_can_without_the_plugin(
    install_plugin: InstallPlugin, tmp_path: Path
) -> None:
    site = tipped_log(install_plugin, tmp_path)
    with_plugin = orjson.loads(ok("stats", "--json", cwd=tmp_path))
    uninstall(site)
    result = chanlog_cli("stats", "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    without = orjson.loads(result.stdout)
    assert without["events_by_type"] == with_plugin["events_by_type"]
    assert without["events_by_type"]["tip-paid"] == 2
    assert (without["length"], without["chain_hash"]) == (4, with_plugin["chain_hash"])
    assert without["entities"] is None
    assert "entities not counted" in result.stderr and "tip-paid" in result.stderr
    # A registered record that no longer decodes is damage, not a missing plugin.
    edit_database(tmp_path / "node.db", "UPDATE events SET payload = X'7B7D' WHERE position = 0")
    damaged = chanlog_cli("stats", cwd=tmp_path)
    assert damaged.exit_code == ExitCode.INTEGRITY, damaged.output
    assert "offset 0: the stored record does not decode" in damaged.stderr
