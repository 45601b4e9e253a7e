"""Where ``chanlog export`` may not write: over the log it reads (its file, or a side file
of it, however the destination names it), or to an empty name. Found by the review of
2026-12-07: ``chanlog --db node.db export node.db`` renamed the export over the database
and exited 0, the log gone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from chanlog.backends.sqlite_schema import SIDE_FILE_SUFFIXES
from chanlog.cli.errors import ExitCode
from cli.conftest import Run
from cli.test_commands import one_line_error


def files_beside(db: Path) -> dict[str, str]:
    """Name -> digest of the log's file and its side files (and anything else there)."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(db.parent.iterdir())
        if path.is_file()
    }


@pytest.mark.parametrize("suffix", ["", *SIDE_FILE_SUFFIXES])
def test_an_export_over_a_file_of_the_log_is_refused(demo_db: Path, run: Run, suffix: str) -> None:
    assert run("verify").exit_code == 0  # writes the remembered head: every side file is real
    destination = demo_db.with_name(demo_db.name + suffix)
    before = files_beside(demo_db)
    result = run("export", str(destination))
    assert result.exit_code == ExitCode.USAGE
    assert one_line_error(result.stderr) == (
        f"chanlog: {destination} is a file of the log being exported ({demo_db}): "
        "export to a file of its own (nothing was written)"
    )
    assert files_beside(demo_db) == before
    assert run("verify").exit_code == 0


def test_the_log_is_recognised_under_another_name(demo_db: Path, run: Run) -> None:
    # A relative name, and a symbolic link to the log: os.replace over either would lose it.
    link = demo_db.with_name("link.db")
    link.symlink_to(demo_db)
    for destination in (link, Path("..") / demo_db.name):
        result = run("export", str(destination))
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "is a file of the log being exported" in one_line_error(result.stderr)
    assert run("verify").exit_code == 0


def test_an_export_beside_the_log_is_written(demo_db: Path, run: Run) -> None:
    destination = demo_db.with_name(demo_db.name + ".jsonl")
    result = run("export", str(destination))
    assert result.exit_code == 0, result.output
    assert destination.read_bytes() == run("export").stdout_bytes


def test_an_empty_destination_is_a_usage_error(demo_db: Path, run: Run) -> None:
    result = run("export", "")
    assert result.exit_code == ExitCode.USAGE
    assert one_line_error(result.stderr) == (
        "chanlog: the export's DESTINATION is empty: give a file name, or '-' for standard output"
    )
