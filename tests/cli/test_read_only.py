"""Reading commands open the log read-only: a misspelled log file is refused (exit 3, naming
it) and nothing is created; ``log`` and ``export`` show records that no longer fold
(issue 18 item 1, issue 13 defect 5)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from chanlog import EventStore, IntegrityError
from chanlog.backends.sqlite import SqliteBackend
from chanlog.cli import cli
from chanlog.cli.demo_events import OBJECTIVE_ID, demo_events
from chanlog.cli.errors import ExitCode
from cli.conftest import Run
from cli.test_console_script import chanlog

READING = [
    ("verify",),
    ("stats",),
    ("show", "objective", OBJECTIVE_ID),
    ("log",),
    ("log", "--json"),
    ("export",),
    ("consumers",),
    ("consumers", "parked", "audit"),
    ("snapshots",),
]


# Every command is one of these; a new command must be added to one (the test below fails
# otherwise), and a reading one is then held to refuse a missing log.
WRITING = frozenset({"append", "import", "generate", "snapshot", "run", "ingest"})
"""Commands that may start a log (they open it writable, creating it when missing)."""
NO_LOG = frozenset({"init", "plugins", "demo"})
"""Commands that open no configured log (``demo`` uses a temporary one by default)."""


def test_every_command_is_reading_writing_or_logless() -> None:
    reading = {command[0] for command in READING}
    assert reading | WRITING | NO_LOG == set(cli.commands), (
        "classify the new command: a command that only reads opens the log with "
        "state.open_store(read_only=True) and goes into READING"
    )
    assert not reading & (WRITING | NO_LOG)


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Whatever an open left behind (the log file, its -wal or -shm, a journal)."""
    return sorted(path.name for path in directory.iterdir() if path.name != "work")


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_a_missing_log_is_not_found_and_nothing_is_created(
    run: Run, tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "chanlgo.db"
    result = run("--db", str(missing), *command, use_db=False)
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    line = one_line_error(result.stderr)
    assert line.startswith("chanlog: not found: ") and str(missing) in line
    assert "(given by --db)" in line and "<kwargs>" not in line
    assert leftovers(tmp_path) == []


def test_a_missing_db_is_named_as_given_by_db_not_as_from_the_config_file(
    run: Run, tmp_path: Path
) -> None:
    """With a configuration file present, the file that is missing still came from --db."""
    config = tmp_path / "chanlog.toml"
    config.write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    missing = tmp_path / "chanlgo.db"
    result = run("--config", str(config), "--db", str(missing), "verify", use_db=False)
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    line = one_line_error(result.stderr)
    assert f"no log file {missing} (given by --db)" in line and "chanlog.toml" not in line
    assert leftovers(tmp_path) == ["chanlog.toml"]


def test_a_typo_in_the_configured_path_is_not_found(run: Run, tmp_path: Path) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text('[backend]\nname = "sqlite"\npath = "chanlgo.db"\n')
    result = run("--config", str(config), "verify", use_db=False)
    assert result.exit_code == ExitCode.NOT_FOUND
    assert str(tmp_path.resolve() / "chanlgo.db") in one_line_error(result.stderr)
    assert leftovers(tmp_path) == ["chanlog.toml"]


def test_writing_commands_still_create_the_log(run: Run, db: Path) -> None:
    assert run("snapshot").exit_code == 0
    assert db.exists()


def test_the_console_script_refuses_a_missing_log(tmp_path: Path) -> None:
    result = chanlog("--db", "chanlgo.db", "verify", cwd=tmp_path)
    assert result.returncode == ExitCode.NOT_FOUND
    assert "chanlgo.db" in one_line_error(result.stderr)
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- a log whose records no longer fold ------------------------------------------------


@pytest.fixture
def unfoldable_db(db: Path) -> Path:
    """A log written with validation off: the objective completes before it was approved,
    which the objective projection refuses."""
    events = demo_events()
    with EventStore(SqliteBackend(db), projections=[]) as store:
        store.append_batch([events[0], events[1], events[12]])
    with pytest.raises(IntegrityError, match=r"offset 2: .*does not fold"):
        EventStore(SqliteBackend(db)).close()
    return db


def test_log_shows_records_that_do_not_fold(run: Run, unfoldable_db: Path) -> None:
    table = run("log")
    assert table.exit_code == 0, table.output
    assert "objective-completed" in table.stdout
    lines = run("log", "--json").stdout.splitlines()
    assert [orjson.loads(line)["type"] for line in lines] == [
        "objective-created",
        "channel-created",
        "objective-completed",
    ]
    around = run("log", "--json", "--from", "2")
    assert [orjson.loads(line)["offset"] for line in around.stdout.splitlines()] == [2]


def test_export_copies_records_that_do_not_fold(run: Run, unfoldable_db: Path) -> None:
    result = run("export")
    assert result.exit_code == 0, result.output
    exported = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["offset"] for line in exported] == [0, 1, 2]
    assert exported[2]["type"] == "objective-completed"


def test_a_folding_command_says_where_to_look(run: Run, unfoldable_db: Path) -> None:
    result = run("stats")
    assert result.exit_code == ExitCode.INTEGRITY
    line = one_line_error(result.stderr)
    assert "does not fold" in line and "chanlog verify" in line and "chanlog log" in line
    assert run("verify").exit_code == 0  # the hashes are intact: only the rules fail
