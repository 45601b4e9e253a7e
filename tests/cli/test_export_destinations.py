"""Where ``chanlog export`` may not write: over the log it reads (its file, or a side file
of it, however the destination names it), or to an empty name. Found by the review of
2026-12-07: ``chanlog --db node.db export node.db`` renamed the export over the database
and exited 0, the log gone."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from chanlog.backends.sqlite_schema import SIDE_FILE_SUFFIXES
from chanlog.cli.errors import ExitCode
from cli.conftest import Run
from cli.test_commands import one_line_error
from cli.test_console_script import CHANLOG


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


def test_an_export_to_a_named_pipe_is_written_into_it(demo_db: Path, run: Run) -> None:
    # Not renamed over it: that turned the pipe into a regular file (and, run as root,
    # `chanlog export /dev/stdout` replaced the /dev/stdout link, /dev/null the device).
    fifo = demo_db.with_name("export.fifo")
    os.mkfifo(fifo)
    # Opened for reading first, without waiting for a writer: the export (7 kB) then fits
    # in the pipe's buffer, and nothing waits on anything.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = run("export", str(fifo))
        os.set_blocking(reader, True)
        with os.fdopen(reader, "rb") as pipe:
            received = pipe.read()
    finally:
        with contextlib.suppress(OSError):
            os.close(reader)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert received == run("export").stdout_bytes
    assert sorted(path.name for path in fifo.parent.glob("export.fifo*")) == ["export.fifo"]


def test_an_export_to_a_pipe_named_by_its_descriptor_is_written_into_it(
    demo_db: Path, run: Run
) -> None:
    # What a shell's process substitution passes: export >(gzip > log.jsonl.gz).
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        try:
            result = run("export", f"/dev/fd/{write_end}")
        finally:
            os.close(write_end)
        received = pipe.read()
    assert result.exit_code == 0, result.output
    assert received == run("export").stdout_bytes


def test_an_export_through_a_symbolic_link_replaces_the_file_it_names(
    demo_db: Path, run: Run
) -> None:
    backups = demo_db.parent / "backups"
    backups.mkdir()
    dated = backups / "2026-12-07.jsonl"
    dated.write_bytes(b"an older export\n")
    latest = demo_db.with_name("latest.jsonl")
    latest.symlink_to(dated)
    result = run("export", str(latest))
    assert result.exit_code == 0, result.output
    assert latest.is_symlink() and latest.resolve() == dated.resolve()
    assert dated.read_bytes() == run("export").stdout_bytes
    assert [path.name for path in backups.iterdir()] == [dated.name]


def test_an_export_into_a_pipe_whose_reader_left_stops_quietly(demo_db: Path) -> None:
    # As an export to standard output piped into `head` does (a process of its own: the
    # command silences its standard output when it stops so).
    assert CHANLOG is not None
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [CHANLOG, "--db", str(demo_db), "export", f"/dev/fd/{write_end}"],
            pass_fds=(write_end,),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")
