"""SIGTERM during ``chanlog generate`` or ``chanlog import`` ends it as Ctrl-C does: one
line saying how many records it had committed (they stay, whole; the batch in hand is rolled
back) and exit code 130. It once died by the signal without a word. The log verifies, holds
what the line says, and the same command run again finishes it."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from cli.test_console_script import CHANLOG, chanlog

SAID = re.compile(
    r"chanlog: interrupted \(SIGTERM\); the (\d+) record\(s\) it had committed stay in the "
    r"log, whole; a batch it was writing, if any, was rolled back\n"
)


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # its schema is being created
        return 0
    finally:
        connection.close()


def _terminated_once_started(arguments: list[str], cwd: Path, db: Path) -> tuple[int, str]:
    """Run chanlog; once it committed a first batch, SIGTERM it; its code and stderr."""
    assert CHANLOG is not None
    process = subprocess.Popen(
        [CHANLOG, *arguments], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while _count(db) == 0:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no first commit within 60 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait(timeout=10)
    return process.returncode, stderr


@pytest.mark.parametrize("command", ["generate", "import"])
def test_sigterm_says_what_was_committed_and_the_log_stays_consistent(
    tmp_path: Path, command: str
) -> None:
    generate = ["generate", "--channels", "300", "--batch-size", "20"]
    if command == "generate":
        arguments = generate
    else:
        source = tmp_path / "source.db"
        assert chanlog("--db", str(source), *generate, cwd=tmp_path).returncode == 0
        export = chanlog("--db", str(source), "export", "dump.jsonl", cwd=tmp_path)
        assert export.returncode == 0, export.stderr
        arguments = ["import", "dump.jsonl", "--batch-size", "20"]
    db = tmp_path / "node.db"
    code, stderr = _terminated_once_started(["--db", str(db), *arguments], tmp_path, db)
    said = SAID.fullmatch(stderr)
    assert (code, said is not None) == (130, True), (code, stderr)
    assert said is not None
    held = _count(db)
    assert 0 < int(said.group(1)) == held < 17911
    verified = chanlog("--db", str(db), "verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert f"ok: {held} records verified" in verified.stdout
    again = chanlog("--db", str(db), *arguments, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _count(db) == 17911
