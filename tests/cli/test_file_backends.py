"""No backend is special to the CLI: ``--db`` and ``init`` treat a plugin's file-backed
backend as they treat SQLite, and ``init`` writes any backend's options."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlog import PluginHost, hookimpl
from chanlog.backends.memory import MemoryBackend
from chanlog.cli.errors import ExitCode
from chanlog.plugins import default_host, reset_default_host
from cli.conftest import Run
from cli.test_console_script import chanlog
from cli.test_read_only import one_line_error


class FileLog(MemoryBackend):
    """A backend keeping its log in one file (records in memory; the file only marks it)."""

    name = "filelog"
    file_option = "path"
    opened: list[dict[str, Any]] = []  # noqa: RUF012 - a test's record of calls

    def __init__(self, path: str, *, colour: str = "blue", read_only: bool = False) -> None:
        super().__init__()
        if not read_only:
            Path(path).touch()
        FileLog.opened.append({"path": path, "colour": colour, "read_only": read_only})


class FileLogPlugin:
    @hookimpl
    def chanlog_register_backends(
        self, register: Callable[[str, Callable[..., Any]], None]
    ) -> None:
        register("filelog", FileLog)


@pytest.fixture
def filelog_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """The process-wide host (the one the CLI uses) with the filelog plugin."""
    monkeypatch.setenv("CHANLOG_LOAD_PLUGINS", "")  # no entry points: only the built-ins
    reset_default_host()
    host = default_host()
    host.register(FileLogPlugin(), name="filelog-plugin")
    FileLog.opened.clear()
    yield host
    reset_default_host()


def test_db_replaces_the_file_of_a_configured_file_backend(
    run: Run, tmp_path: Path, filelog_host: PluginHost
) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text('[backend]\nname = "filelog"\npath = "main.log"\ncolour = "red"\n')
    other = tmp_path / "other.log"
    assert run("--config", str(config), "--db", str(other), "snapshot", use_db=False).exit_code == 0
    assert FileLog.opened == [{"path": str(other), "colour": "red", "read_only": False}]
    FileLog.opened.clear()
    assert run("--config", str(config), "--db", str(other), "stats", use_db=False).exit_code == 0
    assert FileLog.opened == [{"path": str(other), "colour": "red", "read_only": True}]
    missing = run("--config", str(config), "stats", use_db=False)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert str(tmp_path.resolve() / "main.log") in one_line_error(missing.stderr)


def test_db_beside_a_backend_without_a_file_uses_the_default_backend(
    run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "chanlog.toml"
    config.write_text('backend = "memory"\n')
    db = tmp_path / "over.db"
    assert run("--config", str(config), "--db", str(db), "snapshot", use_db=False).exit_code == 0
    assert db.exists()


def test_init_writes_the_file_option_and_the_other_options(
    run: Run, filelog_host: PluginHost
) -> None:
    assert run("init", "--backend", "filelog", "--db-path", "node.log", use_db=False).exit_code == 0
    text = Path("chanlog.toml").read_text()
    assert 'name = "filelog"\n' in text and 'path = "node.log"\n' in text
    assert '# colour = "blue"\n' in text and "read_only" not in text
    assert run("snapshot", use_db=False).exit_code == 0
    assert Path("node.log").exists()


def test_init_for_a_backend_without_a_file_lists_its_options(run: Run) -> None:
    assert run("init", "--backend", "memory", use_db=False).exit_code == 0
    text = Path("chanlog.toml").read_text()
    assert 'name = "memory"\n' in text and "path =" not in text


def test_init_for_postgres_writes_a_commented_dsn(run: Run) -> None:
    pytest.importorskip("chanlog_postgres")
    assert run("init", "--backend", "postgres", use_db=False).exit_code == 0
    text = Path("chanlog.toml").read_text()
    assert 'name = "postgres"\n' in text and '# dsn = ""\n' in text


def test_init_for_postgres_through_the_console_script(tmp_path: Path) -> None:
    """The written file names ``dsn`` (commented, to be set); until it is set, every command
    says so (issue 18 item 8)."""
    pytest.importorskip("chanlog_postgres")
    assert chanlog("init", "--backend", "postgres", cwd=tmp_path).returncode == 0
    text = (tmp_path / "chanlog.toml").read_text()
    required = '# Options of the postgres backend without a default: set them.\n# dsn = ""\n'
    assert required in text
    assert text.index(required) < text.index("# schema = ")
    result = chanlog("verify", cwd=tmp_path)
    assert result.returncode == ExitCode.USAGE
    assert "the option 'dsn' is required" in result.stderr
