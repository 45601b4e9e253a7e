"""The CLI's logic, in-process (CliRunner): every command, its output and its errors."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from chanlog import Event, EventStore, ObjectiveCreated
from chanlog.cli import records_io
from chanlog.cli.demo_events import CHANNEL_ID, OBJECTIVE_ID, demo_events
from chanlog.cli.errors import ExitCode
from chanlog.config import load_config, open_store
from chanlog.errors import ConfigError
from cli.conftest import Run, envelope, jsonl


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("chanlog: ")
    assert "Traceback" not in stderr
    return lines[0]


# -- init ------------------------------------------------------------------------------


def test_init_writes_a_config_that_loads(run: Run, tmp_path: Path) -> None:
    result = run("init", use_db=False)
    assert result.exit_code == 0, result.output
    config = Path("chanlog.toml")
    text = config.read_text()
    assert "# " in text and 'name = "sqlite"' in text and "n = 1000" in text
    settings = load_config(config)
    assert settings.backend == "sqlite"
    assert settings.snapshot_policy == "every-n-events"
    assert settings.backend_options["path"] == str(config.resolve().parent / "chanlog.db")
    # The command group finds ./chanlog.toml without --config.
    assert run("append", orjson.dumps(envelope(0)).decode(), use_db=False).exit_code == 0
    assert Path("chanlog.db").exists()


def test_init_refuses_to_overwrite_without_force(run: Run) -> None:
    assert run("init", use_db=False).exit_code == 0
    again = run("init", use_db=False)
    assert again.exit_code == ExitCode.USAGE
    assert "already exists" in one_line_error(again.stderr)
    forced = run("init", "--force", "--backend", "memory", use_db=False)
    assert forced.exit_code == 0
    assert load_config(Path("chanlog.toml")).backend == "memory"


def test_init_refuses_an_uninstalled_name(run: Run) -> None:
    result = run("init", "--serializer", "yaml", use_db=False)
    assert result.exit_code == ExitCode.USAGE
    line = one_line_error(result.stderr)
    assert "'yaml'" in line and "json" in line
    assert not Path("chanlog.toml").exists()


# -- configuration errors --------------------------------------------------------------


def test_no_configuration_is_a_usage_error(run: Run) -> None:
    result = run("verify", use_db=False)
    assert result.exit_code == ExitCode.USAGE
    assert "chanlog init" in one_line_error(result.stderr)


def test_bad_config_names_file_key_and_allowed(run: Run, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[backend]\nname = "oracle"\n')
    result = run("--config", str(config), "stats", use_db=False)
    assert result.exit_code == ExitCode.USAGE
    line = one_line_error(result.stderr)
    assert str(config) in line and "backend.name" in line and "memory" in line and "sqlite" in line


def test_debug_shows_the_original_error(run: Run, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("colour = 1\n")
    result = run("--debug", "--config", str(config), "stats", use_db=False)
    assert isinstance(result.exception, ConfigError)


# -- append / import / export ----------------------------------------------------------


def test_append_is_one_atomic_batch(run: Run, db: Path) -> None:
    batch = orjson.dumps([envelope(0), envelope(1)]).decode()
    result = run("append", "--json", batch)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"offsets": [0, 1], "appended": 2, "already_present": 0}
    again = run("append", batch)
    assert again.exit_code == 0
    assert "present" in again.stdout
    # channel-created is legal; completing the still unapproved objective is not: the
    # batch is refused whole, so the channel is not created either.
    refused = run(
        "append",
        orjson.dumps(envelope(1)).decode(),
        orjson.dumps(envelope(12)).decode(),
    )
    assert refused.exit_code == ExitCode.INVALID_INPUT
    line = one_line_error(refused.stderr)
    assert "argument 2" in line and "nothing of this batch was written" in line
    assert orjson.loads(run("stats", "--json").stdout)["length"] == 2


def test_append_refuses_bad_documents(run: Run) -> None:
    bad_json = run("append", '{"type": ')
    assert bad_json.exit_code == ExitCode.INVALID_INPUT
    assert "argument 1: malformed JSON" in one_line_error(bad_json.stderr)
    unknown = run("append", '{"type": "nope", "payload": {}}')
    assert unknown.exit_code == ExitCode.INVALID_INPUT
    assert "unknown event type 'nope'" in one_line_error(unknown.stderr)
    bad_field = dict(envelope(0))
    bad_field["payload"] = {**bad_field["payload"], "objective_type": "Teleport"}  # type: ignore[dict-item]
    invalid = run("append", orjson.dumps(bad_field).decode())
    assert invalid.exit_code == ExitCode.INVALID_INPUT
    assert "objective_type" in one_line_error(invalid.stderr)
    assert run("append", "[]").exit_code == ExitCode.USAGE


def test_append_reads_files_in_process(run: Run, tmp_path: Path) -> None:
    # The console-script tests (test_append_files.py) cover the same, out of process.
    document = tmp_path / "event.json"
    document.write_bytes(orjson.dumps(envelope(0), option=orjson.OPT_INDENT_2))
    lines = tmp_path / "more.jsonl"
    lines.write_text(jsonl(range(1, 3)))
    result = run("append", "--json", str(document), str(lines))
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["offsets"] == [0, 1, 2]
    missing = run("append", str(tmp_path / "nope.json"))
    assert missing.exit_code == ExitCode.USAGE
    assert "argument 1: cannot read" in one_line_error(missing.stderr)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "type": \n')
    refused = run("append", str(broken))
    assert refused.exit_code == ExitCode.INVALID_INPUT
    assert f"{broken}: malformed JSON" in one_line_error(refused.stderr)


def test_append_from_stdin(run: Run) -> None:
    result = run("append", "-", input=jsonl(range(3)))
    assert result.exit_code == 0, result.output
    assert orjson.loads(run("stats", "--json").stdout)["length"] == 3


def test_import_bad_line_writes_nothing_of_its_batch(run: Run, tmp_path: Path) -> None:
    lines = jsonl(range(13)).splitlines(keepends=True)
    lines[6] = '{"type": "deposit-detected", "payload": \n'
    source = tmp_path / "events.jsonl"
    source.write_text("".join(lines))
    result = run("import", str(source))
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert f"{source}:7: malformed JSON" in one_line_error(result.stderr)
    assert orjson.loads(run("stats", "--json").stdout)["length"] == 0


def test_import_commits_whole_batches_and_resumes_idempotently(run: Run, tmp_path: Path) -> None:
    lines = jsonl(range(13)).splitlines(keepends=True)
    broken = [*lines[:6], "not json\n", *lines[6:]]
    source = tmp_path / "events.jsonl"
    source.write_text("".join(broken))
    result = run("import", "--batch-size", "3", str(source))
    assert result.exit_code == ExitCode.INVALID_INPUT
    error = one_line_error(result.stderr)
    assert ":7: malformed JSON" in error
    # Said, since the refusal alone reads like the whole command's.
    assert error.endswith("; the 6 record(s) it had committed before stay in the log, whole")
    assert orjson.loads(run("stats", "--json").stdout)["length"] == 6  # two whole batches
    source.write_text("\n".join(line.rstrip("\n") for line in lines) + "\n\n")
    resumed = run("import", "--json", "--batch-size", "3", str(source))
    assert resumed.exit_code == 0, resumed.output
    assert orjson.loads(resumed.stdout) == {
        "read": 13,
        "appended": 7,
        "already_present": 6,
        "exact_copy": False,
        "snapshots_rebuilt": 0,
    }


def test_import_refused_transition_names_the_line(run: Run, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text(jsonl([0, 12]))
    result = run("import", str(source))
    assert result.exit_code == ExitCode.INVALID_INPUT
    line = one_line_error(result.stderr)
    assert f"{source}:2" in line and "objective-completed" in line
    assert "committed before" not in line  # nothing was: one batch, refused whole
    # In a later batch, the message says what the batches before it committed.
    later = run("--db", str(tmp_path / "later.db"), "import", "--batch-size", "1", str(source))
    later_line = one_line_error(later.stderr)
    assert f"{source}:2" in later_line and "objective-completed" in later_line
    assert later_line.endswith("; the 1 record(s) it had committed before stay in the log, whole")


def test_an_export_line_after_envelopes_is_refused_not_appended_as_new(
    demo_db: Path, run: Run, tmp_path: Path
) -> None:
    # A file is an export (copied exactly) or envelopes (appended as new events), as its
    # first line says; an export line further down would lose its offset and chain hash.
    exported = run("export", "--from", "3", "--to", "4").stdout
    source = tmp_path / "mixed.jsonl"
    source.write_text(jsonl(range(3)) + exported)
    copy = tmp_path / "copy.db"
    result = run("--db", str(copy), "import", str(source), use_db=False)
    assert result.exit_code == ExitCode.INVALID_INPUT
    line = one_line_error(result.stderr)
    assert f"{source}:4: an export line (it has an offset), though the lines before it" in line
    assert not copy.exists() or run("--db", str(copy), "log", use_db=False).stdout == ""


def test_export_then_import_reproduces_the_log(demo_db: Path, run: Run, tmp_path: Path) -> None:
    exported = tmp_path / "log.jsonl"
    result = run("export", str(exported))
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in exported.read_bytes().splitlines()]
    assert [line["offset"] for line in lines] == list(range(13))
    assert lines[0]["event_id"] == demo_events()[0].event_id
    assert set(lines[0]) == {"offset", "event_id", "type", "payload", "chain_hash"}
    copy = tmp_path / "copy.db"
    imported = run("--db", str(copy), "import", str(exported), use_db=False)
    assert imported.exit_code == 0, imported.output
    original = orjson.loads(run("verify", "--json").stdout)
    copied = orjson.loads(run("--db", str(copy), "verify", "--json", use_db=False).stdout)
    assert original == copied
    assert original["ok"] is True and original["records"] == 13
    assert original["chain_hash"] == lines[-1]["chain_hash"]


@pytest.mark.parametrize("interrupted_at", [0, 2])
def test_an_interrupted_import_says_what_it_had_committed(
    demo_db: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interrupted_at: int
) -> None:
    from chanlog.cli.commands import transfer

    source = tmp_path / "events.jsonl"
    created = [
        {
            "type": "objective-created",
            "payload": {
                "objective_id": f"0x{index:064x}",
                "objective_type": "DirectFund",
                "timestamp_ms": 1_700_000_000_000 + index,
            },
        }
        for index in range(1, 8)
    ]
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in created))
    batches: list[int] = []
    real_append = records_io.append_numbered  # what transfer calls, patched below

    def append_then_ctrl_c(store: EventStore, events: Sequence[tuple[str, Event]]) -> list[int]:
        if len(batches) == interrupted_at:
            raise KeyboardInterrupt
        batches.append(len(events))
        return real_append(store, events)

    monkeypatch.setattr(transfer, "append_numbered", append_then_ctrl_c)
    result = run("import", "--batch-size", "3", str(source))
    assert result.exit_code == ExitCode.INTERRUPTED
    assert one_line_error(result.stderr) == (
        f"chanlog: interrupted; the {3 * interrupted_at} record(s) it had committed stay in "
        "the log, whole; a batch it was writing, if any, was rolled back"
    )
    assert orjson.loads(run("verify", "--json").stdout)["records"] == 13 + 3 * interrupted_at
    assert run("log", "--json").exit_code == 0
    # A command that only reads says no more than that.
    monkeypatch.setattr(
        transfer, "select_stored", lambda *_, **__: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    assert one_line_error(run("export", str(tmp_path / "out.jsonl")).stderr) == (
        "chanlog: interrupted"
    )


def test_two_exports_to_one_file_at_once_each_leave_a_whole_file(
    demo_db: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backup job that overlaps the previous run: each export writes a file of its own
    # and renames it whole, so the destination is always one complete export.
    from chanlog.cli.commands import transfer

    destination = tmp_path / "backup.jsonl"
    real_select = records_io.select_stored  # what transfer calls, patched below
    other: list[Any] = []

    def select_then_another_export(*arguments: Any, **keywords: Any) -> Any:
        for count, record in enumerate(real_select(*arguments, **keywords)):
            if count == 8 and not other:
                other.append(run("export", "--to", "3", str(destination)))
            yield record

    monkeypatch.setattr(transfer, "select_stored", select_then_another_export)
    first = run("export", str(destination))
    assert other[0].exit_code == 0, other[0].output
    assert first.exit_code == 0, first.output
    monkeypatch.setattr(transfer, "select_stored", real_select)
    assert destination.read_bytes() == run("export").stdout_bytes  # the last one renamed
    assert [path.name for path in tmp_path.iterdir() if "backup" in path.name] == ["backup.jsonl"]


def test_export_range_to_stdout(demo_db: Path, run: Run) -> None:
    result = run("export", "--from", "3", "--to", "5")
    assert result.exit_code == 0
    assert [orjson.loads(line)["offset"] for line in result.stdout.splitlines()] == [3, 4]
    assert run("export", "--from", "5", "--to", "3").exit_code == ExitCode.USAGE


def test_a_tampered_export_line_is_refused(demo_db: Path, run: Run, tmp_path: Path) -> None:
    line = orjson.loads(run("export", "--to", "1").stdout)
    line["payload"]["objective_type"] = "DirectDefund"
    result = run(
        "--db", str(tmp_path / "other.db"), "append", orjson.dumps(line).decode(), use_db=False
    )
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "does not match the payload" in one_line_error(result.stderr)


# -- log -------------------------------------------------------------------------------


def test_log_table_and_filters(demo_db: Path, run: Run) -> None:
    table = run("log")
    assert table.exit_code == 0
    assert "objective-created" in table.stdout and "2026-01-01T00:00:12.000Z" in table.stdout
    typed = run("log", "--json", "--type", "deposit-detected")
    assert [orjson.loads(line)["offset"] for line in typed.stdout.splitlines()] == [6, 7]
    entity = run("log", "--json", "--entity", OBJECTIVE_ID.upper().replace("0X", "0x"))
    assert [orjson.loads(line)["offset"] for line in entity.stdout.splitlines()] == [0, 2, 8, 12]
    ranged = run("log", "--json", "--from", "10", "--to", "12")
    assert [orjson.loads(line)["offset"] for line in ranged.stdout.splitlines()] == [10, 11]
    limited = run("log", "--json", "--limit", "2", "--entity", CHANNEL_ID)
    assert [orjson.loads(line)["offset"] for line in limited.stdout.splitlines()] == [1, 3]


def test_log_errors(demo_db: Path, run: Run) -> None:
    unknown = run("log", "--type", "teleported")
    assert unknown.exit_code == ExitCode.USAGE
    assert "no such event type" in one_line_error(unknown.stderr)
    assert run("log", "--from", "5", "--to", "2").exit_code == ExitCode.USAGE
    assert run("log", "--follow", "--limit", "2").exit_code == ExitCode.USAGE
    empty = run("log", "--type", "challenge-registered")
    assert empty.exit_code == 0 and "no events match" in empty.stderr
    # An id copied from the table, which abbreviates it, matches nothing: say so.
    shown = f"{CHANNEL_ID[:8]}\u2026{CHANNEL_ID[-4:]}"
    for abbreviated in (shown, f"{CHANNEL_ID[:8]}...{CHANNEL_ID[-4:]}"):
        copied = run("log", "--entity", abbreviated)
        assert copied.exit_code == ExitCode.USAGE, copied.output
        assert one_line_error(copied.stderr) == (
            f"chanlog: --entity {abbreviated!r} is abbreviated, as the log's table shows ids: "
            "give the whole id ('chanlog log --json' prints it)"
        )


# -- show / snapshot / stats / verify --------------------------------------------------


def test_show_now_and_with_time_travel(demo_db: Path, run: Run) -> None:
    now = orjson.loads(run("show", "objective", OBJECTIVE_ID, "--json").stdout)
    assert now["state"]["status"] == "completed"
    then = orjson.loads(run("show", "objective", OBJECTIVE_ID, "--at", "3", "--json").stdout)
    assert (then["at"], then["state"]["status"]) == (3, "approved")
    channel = run("show", "channel", CHANNEL_ID, "--at", "6")
    assert channel.exit_code == 0
    assert "supported_turn" in channel.stdout and "before offset 6" in channel.stdout


def test_show_errors(demo_db: Path, run: Run) -> None:
    missing = run("show", "channel", "0x" + "ee" * 32)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert one_line_error(missing.stderr).startswith("chanlog: not found: ")
    before_creation = run("show", "channel", CHANNEL_ID, "--at", "1")
    assert before_creation.exit_code == ExitCode.NOT_FOUND
    kind = run("show", "ledger", CHANNEL_ID)
    assert kind.exit_code == ExitCode.USAGE
    assert "objective" in one_line_error(kind.stderr)
    beyond = run("show", "channel", CHANNEL_ID, "--at", "99")
    assert beyond.exit_code == ExitCode.USAGE


def test_snapshot_and_stats(demo_db: Path, run: Run) -> None:
    taken = run("snapshot", "--json")
    assert taken.exit_code == 0, taken.output
    snapshot = orjson.loads(taken.stdout)
    assert snapshot["offset"] == 13 and snapshot["log_length"] == 14
    stats = orjson.loads(run("stats", "--json").stdout)
    assert stats["length"] == 14
    assert stats["events_by_type"]["deposit-detected"] == 2
    assert stats["events_by_type"]["snapshot-created"] == 1
    assert stats["entities"] == {"objective": 1, "channel": 1, "messages": 0}
    assert stats["latest_snapshot"]["offset"] == 13
    assert stats["backend"] == "sqlite" and stats["file_bytes"] > 0
    table = run("stats")
    assert "events by type" in table.stdout and "snapshot-created" in table.stdout
    # A usage error (exit 2), as the same --at given to `show` is (ADR 0033).
    beyond = run("snapshot", "--at", "99")
    assert beyond.exit_code == ExitCode.USAGE
    assert one_line_error(beyond.stderr) == (
        "chanlog: --at: offset 99 is beyond the end of the log (14)"
    )


def test_verify_detects_a_log_edited_outside_chanlog(demo_db: Path, run: Run) -> None:
    assert "ok: 13 records verified" in run("verify").stdout
    forged = envelope(6)["payload"]
    forged["amount_deposited"] = "5"  # type: ignore[index]
    with sqlite3.connect(demo_db) as connection:
        connection.execute(
            "UPDATE events SET payload = ? WHERE position = 6",
            (orjson.dumps(forged, option=orjson.OPT_SORT_KEYS),),
        )
    result = run("verify", "--json")
    assert result.exit_code == ExitCode.INTEGRITY
    assert orjson.loads(result.stdout)["offset"] == 6
    line = one_line_error(result.stderr)
    assert line.startswith("chanlog: integrity failure: ") and "offset 6" in line


def test_an_unreadable_stored_record_is_an_integrity_failure(demo_db: Path, run: Run) -> None:
    with sqlite3.connect(demo_db) as connection:
        connection.execute("UPDATE events SET payload = ? WHERE position = 4", (b"{not json",))
    result = run("log")
    assert result.exit_code == ExitCode.INTEGRITY
    assert "offset 4" in one_line_error(result.stderr)


def test_a_file_that_is_not_a_log_is_a_storage_error(run: Run, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"hello, not a database" * 100)
    result = run("--db", str(bogus), "stats", use_db=False)
    assert result.exit_code == ExitCode.STORAGE
    assert one_line_error(result.stderr).startswith("chanlog: storage error: ")


# -- plugins / generate / demo ---------------------------------------------------------


def test_plugins_lists_what_each_registered(run: Run) -> None:
    result = run("plugins", "--json", use_db=False)
    assert result.exit_code == 0
    plugins = {plugin["name"]: plugin for plugin in orjson.loads(result.stdout)["plugins"]}
    storage = plugins["chanlog.plugins.builtin_storage"]
    assert storage["origin"] == "built-in"
    assert storage["registered"] == {"serializers": ["json"], "backends": ["memory", "sqlite"]}
    assert len(plugins["chanlog.plugins.builtin_events"]["registered"]["event_types"]) == 21
    table = run("plugins", use_db=False)
    assert "chanlog.plugins.builtin_projections" in table.stdout


def test_generate_is_deterministic_and_idempotent(run: Run) -> None:
    first = run("generate", "--json", "--channels", "3", "--turns", "3", "--seed", "7")
    assert first.exit_code == 0, first.output
    summary = orjson.loads(first.stdout)
    assert summary["appended"] == summary["events"] > 0
    second = orjson.loads(
        run("generate", "--json", "--channels", "3", "--turns", "3", "--seed", "7").stdout
    )
    assert second["appended"] == 0 and second["already_present"] == summary["events"]
    shown = run("show", "channel", summary["sample_channel"], "--json")
    assert shown.exit_code == 0
    assert orjson.loads(run("verify", "--json").stdout)["records"] == summary["log_length"]


def test_generate_with_the_same_seed_and_other_options_says_why_it_is_refused(
    run: Run,
) -> None:
    shape = ("--channels", "3", "--turns", "3", "--seed", "7")
    first = orjson.loads(run("generate", "--json", *shape).stdout)
    again = run("generate", "--channels", "4", "--turns", "5", "--seed", "7", "--batch-size", "7")
    assert again.exit_code == ExitCode.INVALID_INPUT
    error = one_line_error(again.stderr)
    assert error.startswith("chanlog: refused: batch[")
    assert "already holds a workload generated with --seed 7 and other options" in error
    assert "choose another --seed" in error
    assert orjson.loads(run("verify", "--json").stdout)["records"] == first["log_length"]


def test_generate_passes_on_a_refusal_of_an_entity_the_log_did_not_hold(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chanlog.errors import InvalidTransition

    def refuse(self: EventStore, events: Sequence[Event]) -> list[int]:
        raise InvalidTransition(
            "refused by a plugin's projection",
            kind="fees",
            entity_id="0x" + "ab" * 32,
            event_type=events[0].event_type,
            rule="fees.paid-once",
        )

    monkeypatch.setattr(EventStore, "append_batch", refuse)
    result = run("generate", "--channels", "1")
    assert result.exit_code == ExitCode.INVALID_INPUT
    error = one_line_error(result.stderr)
    assert error == "chanlog: refused: refused by a plugin's projection"


def test_progress_bars_go_to_stderr(run: Run) -> None:
    result = run("--progress", "generate", "--channels", "2", "--turns", "2")
    assert result.exit_code == 0
    assert "generate" in result.stderr and "generated" in result.stdout
    verify = run("--progress", "verify")
    assert "verify" in verify.stderr
    quiet = run("--no-progress", "verify")
    assert quiet.stderr == ""


def test_demo_in_a_temporary_store(run: Run) -> None:
    result = run("demo", "--json", use_db=False)
    assert result.exit_code == 0, result.output
    demo = orjson.loads(result.stdout)
    assert "(temporary)" in demo["store"]
    assert [line["offset"] for line in demo["log"]] == list(range(13))
    assert demo["now"]["objective"]["status"] == "completed"
    assert demo["time_travel"]["at"] == 6
    assert demo["time_travel"]["objective"]["status"] == "approved"
    assert demo["time_travel"]["channel"]["holdings"] == {}
    assert demo["verified"] == 13
    assert not Path("chanlog.db").exists()


def test_demo_into_a_named_store_and_time_travel_offset(run: Run, db: Path) -> None:
    result = run("demo", "--at", "9")
    assert result.exit_code == 0, result.output
    assert "time travel to offset 9" in result.stdout
    assert "hash chain verified: 13 events" in result.stdout
    assert db.exists()
    assert run("demo", "--at", "99").exit_code == ExitCode.USAGE


@pytest.mark.parametrize("command", ["stats", "verify", "log", "export", "snapshot"])
def test_read_commands_on_an_empty_log(run: Run, db: Path, command: str) -> None:
    # An existing log with no events (a missing one is refused: tests/cli/test_read_only.py).
    open_store(backend={"name": "sqlite", "path": str(db)}).close()
    result = run(command)
    assert result.exit_code == 0, result.output


def test_export_into_a_missing_directory_is_an_io_error(
    demo_db: Path, run: Run, tmp_path: Path
) -> None:
    destination = tmp_path / "missing" / "out.jsonl"
    result = run("export", str(destination))
    assert result.exit_code == ExitCode.STORAGE
    assert one_line_error(result.stderr) == (
        f"chanlog: {destination}: cannot write the export: No such file or directory (nothing "
        "was written there)"
    )
    assert not (tmp_path / "missing").exists()


def test_log_follow_catches_up_then_prints_live_records(
    demo_db: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chanlog.cli.commands import log as log_module
    from chanlog.config import open_store

    waits: list[int] = []

    def append_then_interrupt(backend: object, length: int) -> None:
        """Stands in for the wait for appends: another writer appends, then Ctrl-C."""
        waits.append(length)
        if len(waits) > 1:
            raise KeyboardInterrupt
        with open_store(backend={"name": "sqlite", "path": str(demo_db)}) as writer:
            writer.append(
                ObjectiveCreated(
                    objective_id="0x" + "0f" * 32, objective_type="DirectFund", timestamp_ms=5
                )
            )

    monkeypatch.setattr(log_module, "_wait_for_appends", append_then_interrupt)
    result = run(
        "log",
        "--follow",
        "--json",
        "--from",
        "11",
        "--type",
        "objective-created",
        "--type",
        "objective-completed",
    )
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["offset"] for line in result.stdout.splitlines()] == [12, 13]
    assert waits == [13, 14]  # each wait from the end of what was read


def test_log_follow_says_when_the_log_lost_what_it_printed(
    demo_db: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A followed log that loses its tail (a crash with durability "normal", a restored
    backup) is noticed, and the records written in its place are printed; a record read
    that another took the place of is named."""
    from chanlog.cli.commands import log as log_module
    from chanlog.config import open_store
    from sqlite_edits import edit_database

    def append(objective: str) -> None:
        with open_store(backend={"name": "sqlite", "path": str(demo_db)}) as writer:
            writer.append(
                ObjectiveCreated(
                    objective_id="0x" + objective * 32, objective_type="DirectFund", timestamp_ms=5
                )
            )

    def cut_then_append() -> None:
        edit_database(demo_db, "DELETE FROM events WHERE position = 10")
        append("0d")

    steps: Iterator[Callable[[], None]] = iter(
        [
            lambda: edit_database(demo_db, "DELETE FROM events WHERE position >= 10"),
            lambda: append("0e"),
            cut_then_append,
        ]
    )

    def wait(backend: object, length: int) -> None:
        action = next(steps, None)
        if action is None:
            raise KeyboardInterrupt
        action()

    monkeypatch.setattr(log_module, "_wait_for_appends", wait)
    result = run("log", "--follow", "--json", "--from", "11")
    assert result.exit_code == 0, result.output
    printed = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["offset"] for line in printed] == [11, 12, 10]
    assert printed[2]["payload"]["objective_id"] == "0x" + "0e" * 32
    notes = result.stderr.splitlines()
    assert notes[0].startswith("the log now holds 10 records, fewer than the 13 already read")
    assert notes[1].startswith("the log's record at offset 10 is not the one read there any more")


def test_an_export_removes_what_a_killed_export_left_and_nothing_else(
    demo_db: Path, run: Run, tmp_path: Path
) -> None:
    # An export killed before its rename leaves its partial file: the next export to the
    # same destination removes it, but not a live export's (locked) nor a file just made
    # (its export may not have locked it yet), nor anything not named like one.
    import fcntl

    destination = tmp_path / "backup.jsonl"
    old = time.time() - 3_600

    def partial(name: str, *, age: float = old) -> Path:
        path = tmp_path / name
        path.write_bytes(b'{"offset": 0}\n')
        os.utime(path, (age, age))
        return path

    abandoned = partial("backup.jsonl.0123456789ab.partial")
    live = partial("backup.jsonl.aaaaaaaaaaaa.partial")
    fresh = partial("backup.jsonl.bbbbbbbbbbbb.partial", age=time.time())
    unrelated = [partial("backup.jsonl.partial"), partial("other.jsonl.cccccccccccc.partial")]
    with live.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run("export", str(destination))
    assert result.exit_code == 0, result.output
    assert not abandoned.exists()
    assert live.exists() and fresh.exists() and all(path.exists() for path in unrelated)
    assert destination.read_bytes() == run("export").stdout_bytes


@pytest.mark.parametrize("key", ["event_Id", "expected_version", "metadata"])
def test_an_envelope_key_chanlog_does_not_read_is_refused_naming_it(
    run: Run, tmp_path: Path, key: str
) -> None:
    """A misspelt ``event_id`` turned its check off, and a key such as ``expected_version``
    read as a condition the import honoured: both were ignored, silently."""
    line = {**envelope(1), key: "0x" + "00" * 32}
    source = tmp_path / "events.jsonl"
    source.write_text(jsonl([0]) + orjson.dumps(line).decode() + "\n")
    result = run("import", str(source))
    assert result.exit_code == ExitCode.INVALID_INPUT
    error = one_line_error(result.stderr)
    assert (
        f"{source}:2: channel-created: the envelope has no key {key!r} (an envelope has " in error
    )
    assert orjson.loads(run("stats", "--json").stdout)["length"] == 0
