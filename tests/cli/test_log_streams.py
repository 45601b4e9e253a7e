"""``chanlog log`` prints each record as it reads it and keeps none (issue 18 item 4): the
records before a damaged one are printed before the damage is found, whatever the size of
the log. Through the console script. (How fast the first line comes is a benchmark row,
``log.first-line.300k``, not a timed test.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from chanlog.cli.errors import ExitCode
from cli.test_console_script import CHANLOG, chanlog
from sqlite_edits import edit_database

DAMAGED = 1200


@pytest.fixture(scope="module")
def damaged_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of about 1,700 records whose record at offset 1200 no longer parses."""
    directory = tmp_path_factory.mktemp("damaged")
    generated = chanlog("--db", "node.db", "generate", "--channels", "40", cwd=directory)
    assert generated.returncode == 0, generated.stderr
    edit_database(
        directory / "node.db",
        f"UPDATE events SET payload = CAST('not json' AS BLOB) WHERE position = {DAMAGED}",
    )
    return directory


@pytest.mark.parametrize("json_mode", [False, True], ids=["table", "json"])
def test_records_are_printed_before_the_rest_is_read(damaged_log: Path, json_mode: bool) -> None:
    result = chanlog("--db", "node.db", "log", *(["--json"] if json_mode else []), cwd=damaged_log)
    assert result.returncode == ExitCode.INTEGRITY
    assert f"offset {DAMAGED}" in result.stderr
    lines = result.stdout.splitlines()
    if json_mode:
        offsets = [orjson.loads(line)["offset"] for line in lines]
    else:
        assert lines[0].split() == ["offset", "type", "timestamp", "(UTC)", "entity", "event", "id"]
        offsets = [int(line.split()[0]) for line in lines[1:]]
    assert offsets == list(range(DAMAGED))


def test_the_first_line_comes_while_the_rest_is_still_unread(damaged_log: Path) -> None:
    """Read one record line, then stop reading: the process is blocked writing the rest
    (the pipe is full), so it has not reached the damaged record and not exited."""
    assert CHANLOG is not None
    process = subprocess.Popen(
        [CHANLOG, "--db", "node.db", "log", "--json"],
        cwd=damaged_log,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = orjson.loads(process.stdout.readline())
        assert first["offset"] == 0
        assert process.poll() is None
    finally:
        process.kill()
        process.communicate()


def test_rows_line_up_without_knowing_the_records(damaged_log: Path) -> None:
    result = chanlog("--db", "node.db", "log", "--to", "12", cwd=damaged_log)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 13
    assert len({line.index("0x") for line in lines[1:]}) == 1  # the entity column
    assert len({len(line) for line in lines[1:]}) == 1
