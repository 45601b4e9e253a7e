"""``chanlog consumers reset NAME --to X``: an X that is no position is a usage error that
names ``--to`` (it said "start must be ...", the name of a configuration key the command
line does not have), found before the log is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

import chanlog
from chanlog.backends.sqlite import SqliteBackend
from chanlog.cli.errors import ExitCode
from cli.conftest import Run


@pytest.mark.parametrize("target", ["bogus", "-1", "1.5", "Earliest"])
def test_a_reset_target_that_is_no_position_names_the_option(
    run: Run, demo_db: Path, target: str
) -> None:
    with (
        chanlog.EventStore(SqliteBackend(demo_db), projections=[]) as store,
        store.bus.consumer("audit", lambda record: None) as runner,
    ):
        runner.drain()
    result = run("consumers", "reset", "audit", "--to", target)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.output.strip() == (
        f"chanlog: --to {target!r}: expected earliest, latest or an offset >= 0"
    )


def test_it_is_found_before_the_log_is_opened(run: Run) -> None:
    result = run("consumers", "reset", "audit", "--to", "bogus")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "not found" not in result.output
