"""``chanlog verify`` prints the head to record, and holds the log against recorded heads
(``--expect-head``), replicas (``--replica``) and the head chanlog remembered (ADR 0024)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import orjson

from chanlog.cli.errors import ExitCode
from cli.conftest import Run


def _head(run: Run) -> str:
    result = run("verify")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("head: "))
    return line.removeprefix("head: ")


def _cut(db: Path, keep: int) -> None:
    with sqlite3.connect(db) as raw:
        raw.execute(f"DELETE FROM events WHERE position >= {keep}")
    Path(f"{db}-head").unlink(missing_ok=True)


def test_verify_prints_the_head_and_what_it_checked(run: Run, demo_db: Path) -> None:
    head = _head(run)
    offset, _, chain = head.partition(":")
    assert int(offset) == 12 and len(chain) == 66
    result = run("verify", "--expect-head", head)
    assert result.exit_code == 0
    assert "checked: stream index entries" in result.stdout
    data = orjson.loads(run("verify", "--json", "--expect-head", head).stdout)
    assert data["head"] == head and data["records"] == 13
    sources = {witness["source"] for witness in data["witnesses"]}
    assert sources == {"--expect-head", "the head chanlog remembered"}


def test_a_cut_tail_fails_against_the_recorded_head(run: Run, demo_db: Path) -> None:
    head = _head(run)
    _cut(demo_db, 9)
    assert run("verify").exit_code == 0  # nothing in the file shows the cut any more
    result = run("verify", "--expect-head", head)
    assert result.exit_code == ExitCode.INTEGRITY
    assert "offset 9" in result.output and "cut from its tail" in result.output
    data = orjson.loads(run("verify", "--json", "--expect-head", head).stdout)
    assert data == {"ok": False, "offset": 9, "error": data["error"]}


def test_a_cut_tail_fails_against_a_replica(run: Run, demo_db: Path, tmp_path: Path) -> None:
    replica = tmp_path / "replica.db"
    shutil.copy(demo_db, replica)
    _cut(demo_db, 5)
    result = run("verify", "--replica", str(replica))
    assert result.exit_code == ExitCode.INTEGRITY
    assert "offset 5" in result.output and "replica" in result.output


def test_a_cut_tail_fails_against_the_remembered_head(run: Run, demo_db: Path) -> None:
    with sqlite3.connect(demo_db) as raw:
        raw.execute("DELETE FROM events WHERE position >= 10")
    result = run("verify")
    assert result.exit_code == ExitCode.INTEGRITY
    assert "offset 10" in result.output and "remembered" in result.output


def test_bad_witness_arguments_are_refused_without_a_traceback(
    run: Run, demo_db: Path, tmp_path: Path
) -> None:
    # A malformed option is a usage error (exit 2, as `chanlog --help` says), like a
    # malformed id given to `show`; 4 is for input refused, such as events to append.
    bad = run("verify", "--expect-head", "12:nothex")
    assert bad.exit_code == ExitCode.USAGE
    assert "OFFSET:HASH" in bad.output and "Traceback" not in bad.output
    assert bad.output.startswith("chanlog: --expect-head: expected OFFSET:HASH")
    missing = run("verify", "--replica", str(tmp_path / "nowhere.db"))
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert "nowhere.db" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "nowhere.db").exists()
