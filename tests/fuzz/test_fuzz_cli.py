"""The CLI over damaged databases: never a traceback without ``--debug``, and always one of
the documented exit codes (:mod:`chanlog.cli.errors`). In-process through click's runner,
which catches what escapes (``result.exception``), and through the real console script."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chanlog.cli import cli
from chanlog.cli.errors import ExitCode
from fuzz.test_fuzz_sqlite_files import PAGE, build_log, flipped

DOCUMENTED = {int(code) for code in ExitCode} - {int(ExitCode.INTERRUPTED)}
COMMANDS = [["verify"], ["stats"], ["log"], ["export", "-"], ["log", "--json"]]
CHANLOG = shutil.which("chanlog", path=os.path.dirname(sys.executable)) or shutil.which("chanlog")


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz-cli") / "log.db"
    build_log(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cli-copies")


def _damaged(data: bytes, seed: int, count: int) -> bytes:
    limit = random.Random(seed).choice([None, None, PAGE, 2 * PAGE])
    return flipped(data, seed, count, limit)


def run_in_process(db: Path, command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--db", str(db), *command], prog_name="chanlog")
    # What escapes the command group is caught by the runner: it must be nothing but
    # click's own exit.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        command,
        result.exception,
        result.exc_info,
    )
    assert result.exit_code in DOCUMENTED, (command, result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chanlog: "), result.stderr


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 8), command=st.sampled_from(COMMANDS))
def test_commands_on_damaged_databases(
    good_db: bytes, scratch: Path, seed: int, count: int, command: list[str]
) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as place:
        db = Path(place) / "log.db"
        db.write_bytes(_damaged(good_db, seed, count))
        run_in_process(db, command)


def test_commands_on_the_good_database(good_db: bytes, scratch: Path) -> None:
    with tempfile.TemporaryDirectory(dir=scratch) as place:
        db = Path(place) / "log.db"
        db.write_bytes(good_db)
        for command in COMMANDS:
            result = CliRunner().invoke(cli, ["--db", str(db), *command], prog_name="chanlog")
            assert result.exit_code == 0, (command, result.output)


# Damage refused at different places (with SQLite 3 of this machine): (1, 2) a chain hash
# (verify exits 1), (2, 2) a payload that no longer decodes (exit 1), (0, 8) the schema
# (exit 5). Another SQLite may lay the file out differently: any documented code passes.
SUBPROCESS_CASES = [(1, 2, "verify"), (0, 8, "stats"), (2, 2, "log"), (0, 8, "export")]


@pytest.mark.parametrize(("seed", "count", "command"), SUBPROCESS_CASES)
def test_console_script_on_a_damaged_database(
    good_db: bytes, tmp_path: Path, seed: int, count: int, command: str
) -> None:
    assert CHANLOG is not None, "the chanlog console script is not installed"
    db = tmp_path / "log.db"
    db.write_bytes(_damaged(good_db, seed, count))
    arguments = [CHANLOG, "--db", str(db), command, *(["-"] if command == "export" else [])]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    result = subprocess.run(
        arguments,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode in DOCUMENTED, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("chanlog: "), result.stderr


def test_console_script_on_a_damaged_schema_page(good_db: bytes, tmp_path: Path) -> None:
    """Issue 13 defect 7: one byte of a table name in the schema page made ``chanlog verify``
    print a UnicodeDecodeError traceback."""
    assert CHANLOG is not None
    data = bytearray(good_db)
    data[good_db.index(b"tablesnapshotssnapshots") + len(b"table")] = 0xFF
    db = tmp_path / "log.db"
    db.write_bytes(bytes(data))
    result = subprocess.run(
        [CHANLOG, "--db", str(db), "verify"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")},
        timeout=120,
        check=False,
    )
    assert result.returncode == ExitCode.STORAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert "not UTF-8" in result.stderr and str(db) in result.stderr
