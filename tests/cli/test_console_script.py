"""Every command through the installed ``chanlog`` console script (a real process), with
its error paths: non-zero exit, one line on stderr, no traceback."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chanlog.cli.demo_events import CHANNEL_ID, OBJECTIVE_ID
from chanlog.cli.errors import ExitCode
from cli.conftest import envelope, jsonl

CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")


def chanlog(
    *args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert CHANLOG is not None, "the chanlog console script is not installed"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    environment.update(env or {})
    return subprocess.run(
        [CHANLOG, *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chanlog: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_readme_first_command_demo(tmp_path: Path) -> None:
    result = chanlog("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "objective-created" in result.stdout
    assert "2026-01-01T00:00:12.000Z" in result.stdout
    assert "time travel to offset 6" in result.stdout
    assert "hash chain verified: 13 events" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary store is gone


def test_every_command_in_a_configured_directory(tmp_path: Path) -> None:
    assert chanlog("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "chanlog.toml").exists()
    appended = chanlog("append", "--json", orjson.dumps(envelope(0)).decode(), cwd=tmp_path)
    assert orjson.loads(appended.stdout)["offsets"] == [0]
    source = tmp_path / "rest.jsonl"
    source.write_text(jsonl(range(1, 13)))
    imported = chanlog("--progress", "import", str(source), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "12 appended" in imported.stdout and "import" in imported.stderr
    logged = chanlog("log", "--json", "--entity", OBJECTIVE_ID, cwd=tmp_path)
    assert [orjson.loads(line)["offset"] for line in logged.stdout.splitlines()] == [0, 2, 8, 12]
    shown = chanlog("show", "channel", CHANNEL_ID, "--at", "6", "--json", cwd=tmp_path)
    assert orjson.loads(shown.stdout)["state"]["supported_turn"] == 0
    exported = chanlog("export", "out.jsonl", cwd=tmp_path)
    assert exported.returncode == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 13
    verified = chanlog("verify", cwd=tmp_path)
    assert "ok: 13 records verified" in verified.stdout
    snapshot = chanlog("snapshot", "--json", cwd=tmp_path)
    assert orjson.loads(snapshot.stdout)["offset"] == 13
    stats = orjson.loads(chanlog("stats", "--json", cwd=tmp_path).stdout)
    assert stats["length"] == 14 and stats["latest_snapshot"]["offset"] == 13
    generated = chanlog("--progress", "generate", "--channels", "2", "--turns", "2", cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    assert "generate" in generated.stderr
    plugins = chanlog("plugins", cwd=tmp_path)
    assert "chanlog.plugins.builtin_storage" in plugins.stdout


def test_error_paths(tmp_path: Path) -> None:
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('[backend]\nname = "sqlite"\ndurablity = "full"\n')
    # A write command: a reading one may find the log file missing before it meets the
    # option (tests/cli/test_read_only.py).
    assert_user_error(
        chanlog("--config", str(bad_config), "snapshot", cwd=tmp_path),
        ExitCode.USAGE,
        str(bad_config),
        "durablity",
    )
    db = tmp_path / "log.db"
    assert (
        chanlog("--db", str(db), "import", "-", input=jsonl(range(13)), cwd=tmp_path).returncode
        == 0
    )
    assert_user_error(
        chanlog("--db", str(db), "show", "objective", "0x" + "ab" * 32, cwd=tmp_path),
        ExitCode.NOT_FOUND,
        "not found",
    )
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text(jsonl([0]) + "{oops\n")
    assert_user_error(
        chanlog("--db", str(tmp_path / "other.db"), "import", str(bad_line), cwd=tmp_path),
        ExitCode.INVALID_INPUT,
        f"{bad_line}:2: malformed JSON",
    )
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE events SET chain_hash = zeroblob(32) WHERE position = 9")
    assert_user_error(
        chanlog("--db", str(db), "verify", cwd=tmp_path),
        ExitCode.INTEGRITY,
        "integrity failure",
        "offset 9",
    )


def test_log_follow_prints_what_another_process_appends(tmp_path: Path) -> None:
    assert CHANLOG is not None
    db = tmp_path / "log.db"
    assert chanlog("--db", str(db), "import", "-", input=jsonl([0]), cwd=tmp_path).returncode == 0
    follower = subprocess.Popen(
        [CHANLOG, "--db", str(db), "log", "--follow", "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal, whatever the test run inherited: a run started in the
        # background by a shell without job control ignores SIGINT, and so would the follower.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert follower.stdout is not None
        assert orjson.loads(follower.stdout.readline())["offset"] == 0
        appended = chanlog(
            "--db", str(db), "append", orjson.dumps(envelope(1)).decode(), cwd=tmp_path
        )
        assert appended.returncode == 0
        live = orjson.loads(follower.stdout.readline())
        assert (live["offset"], live["type"]) == (1, "channel-created")
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=20) == 0
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


def test_an_export_that_does_not_fit_leaves_nothing_and_says_where(tmp_path: Path) -> None:
    """A disk that fills up (a file-size limit here) while the export is written: exit 5,
    the destination named, no file and no partial file left; an older export stays."""
    assert chanlog("--db", "node.db", "generate", "--channels", "5", cwd=tmp_path).returncode == 0
    destination = tmp_path / "out.jsonl"
    destination.write_text("the previous export\n")

    def small_disk() -> None:
        # Ignored, SIGXFSZ turns a write past the limit into EFBIG, as a full disk's ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    done = subprocess.run(
        [str(CHANLOG), "--db", "node.db", "export", str(destination)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=small_disk,
    )
    assert done.returncode == ExitCode.STORAGE
    assert done.stderr == (
        f"chanlog: {destination}: cannot write the export: File too large (nothing was written "
        "there)\n"
    )
    assert [path.name for path in tmp_path.iterdir() if "out.jsonl" in path.name] == ["out.jsonl"]
    assert destination.read_text() == "the previous export\n"


@pytest.mark.slow
def test_generate_a_hundred_channels_then_verify_stats_and_time_travel(tmp_path: Path) -> None:
    db = str(tmp_path / "big.db")
    generated = chanlog(
        "--progress",
        "--db",
        db,
        "generate",
        "--channels",
        "100",
        "--turns",
        "100",
        "--json",
        cwd=tmp_path,
    )
    assert generated.returncode == 0, generated.stderr
    summary = orjson.loads(generated.stdout)
    assert summary["appended"] == summary["events"] > 30_000
    assert "generate" in generated.stderr
    verified = chanlog("--progress", "--db", db, "verify", "--json", cwd=tmp_path)
    assert orjson.loads(verified.stdout)["records"] == summary["log_length"]
    assert "verify" in verified.stderr
    stats = orjson.loads(chanlog("--db", db, "stats", "--json", cwd=tmp_path).stdout)
    assert stats["entities"]["channel"] == 100
    assert stats["latest_snapshot"] is not None  # the default policy snapshotted on the way
    channel = summary["sample_channel"]
    now = orjson.loads(
        chanlog("--db", db, "show", "channel", channel, "--json", cwd=tmp_path).stdout
    )
    first = orjson.loads(
        chanlog(
            "--db", db, "log", "--json", "--entity", channel, "--limit", "12", cwd=tmp_path
        ).stdout.splitlines()[-1]
    )
    then = chanlog(
        "--db", db, "show", "channel", channel, "--at", str(first["offset"]), "--json", cwd=tmp_path
    )
    assert then.returncode == 0, then.stderr
    earlier = orjson.loads(then.stdout)["state"]
    assert earlier["event_count"] == 11
    assert earlier["event_count"] < now["state"]["event_count"]
