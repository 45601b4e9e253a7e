"""A missing file named by ``CHANLOG_DB`` or ``CHANLOG_CONFIG`` is refused naming the
variable: an operator who never typed ``--db`` was told the file was "given by --db", and
a missing configuration file did not say where its name came from."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chanlog.cli import cli
from chanlog.cli.errors import ExitCode


def _chanlog(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, prog_name="chanlog")
    return result.exit_code, result.output


@pytest.fixture(autouse=True)
def _empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHANLOG_CONFIG", raising=False)
    monkeypatch.delenv("CHANLOG_DB", raising=False)


@pytest.mark.parametrize(
    ("args", "env", "origin"),
    [
        (("stats",), {"CHANLOG_DB": "typo.db"}, "CHANLOG_DB"),
        (("--db", "typo.db", "stats"), {}, "--db"),
        # The option wins over the variable, and is named.
        (("--db", "typo.db", "stats"), {"CHANLOG_DB": "other.db"}, "--db"),
    ],
)
def test_a_missing_log_names_where_its_name_came_from(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], origin: str
) -> None:
    code, output = _chanlog(*args, env=env)
    assert code == ExitCode.NOT_FOUND, output
    assert output.strip() == (
        f"chanlog: not found: no log file {tmp_path / 'typo.db'} (given by {origin}); "
        "opened read-only, so nothing was created"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "env", "origin"),
    [
        (("stats",), {"CHANLOG_CONFIG": "nope.toml"}, "CHANLOG_CONFIG"),
        (("--config", "nope.toml", "stats"), {}, "--config"),
        (("--config", "nope.toml", "generate"), {"CHANLOG_CONFIG": "other.toml"}, "--config"),
    ],
)
def test_a_missing_configuration_file_names_where_its_name_came_from(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], origin: str
) -> None:
    code, output = _chanlog(*args, env=env)
    assert code == ExitCode.USAGE, output
    assert output.strip() == (
        f"chanlog: configuration error: nope.toml: no such configuration file (given by "
        f"{origin}, relative to {tmp_path}); pass an existing file, or run 'chanlog init' to "
        "write one"
    )
    assert list(tmp_path.iterdir()) == []
