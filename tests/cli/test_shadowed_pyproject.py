"""A directory with both a ``chanlog.toml`` and a ``pyproject.toml`` holding
``[tool.chanlog]``: the CLI uses ``chanlog.toml``, as ``--help`` says, and says on stderr
that the other table is ignored (it said nothing: an operator who edited the pyproject
table saw none of it take effect)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chanlog.cli import cli

PYPROJECT = '[project]\nname = "node"\n\n[tool.chanlog]\nserializer = "json"\n'
WARNING = (
    "chanlog: using {directory}/chanlog.toml; the [tool.chanlog] table of "
    "{directory}/pyproject.toml is ignored (chanlog.toml comes first): keep the settings in "
    "one of them"
)


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHANLOG_CONFIG", raising=False)
    monkeypatch.delenv("CHANLOG_DB", raising=False)
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    return tmp_path


def _generate(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, [*args, "generate", "--channels", "1", "--turns", "1"])
    return result.exit_code, result.stderr.splitlines()


def test_a_pyproject_table_beside_chanlog_toml_is_said_to_be_ignored_once(
    directory: Path,
) -> None:
    (directory / "pyproject.toml").write_text(PYPROJECT)
    code, errors = _generate()
    assert code == 0, errors
    assert errors.count(WARNING.format(directory=directory)) == 1
    assert (directory / "node.db").exists()


@pytest.mark.parametrize(
    "pyproject", [None, '[project]\nname = "node"\n', "not toml ["], ids=["none", "no-table", "bad"]
)
def test_nothing_is_said_without_a_table_to_ignore(directory: Path, pyproject: str | None) -> None:
    if pyproject is not None:
        (directory / "pyproject.toml").write_text(pyproject)
    code, errors = _generate()
    assert code == 0, errors
    assert not any("is ignored" in line for line in errors)


def test_nothing_is_said_when_the_file_is_chosen(directory: Path) -> None:
    (directory / "pyproject.toml").write_text(PYPROJECT)
    code, errors = _generate("--config", "chanlog.toml")
    assert code == 0, errors
    assert not any("is ignored" in line for line in errors)
