"""``chanlog run`` with a handler that cannot be built: a mistake in its options names the
configuration file, and a file it cannot open is a storage error (exit 5) naming that file,
as the channel read model's is."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from chanlog.cli import cli
from chanlog.cli.errors import ExitCode


def _run(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "run"], prog_name="chanlog")
    return result.exit_code, result.output


def _config(tmp_path: Path, consumer: str) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(
        f'[backend]\nname = "sqlite"\npath = "node.db"\n\n[consumers.audit]\n{consumer}'
    )
    return config


def test_an_audit_file_in_a_missing_directory_is_a_storage_error_naming_it(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, 'handler = "jsonl"\npath = "nodir/audit.jsonl"\n')
    code, output = _run(config)
    assert code == ExitCode.STORAGE, output
    [line] = output.strip().splitlines()
    assert line.startswith(f"chanlog: storage error: {tmp_path / 'nodir' / 'audit.jsonl'}: ")
    assert "cannot open the audit file" in line and "No such file or directory" in line


def test_an_audit_file_that_is_a_directory_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").mkdir()
    code, output = _run(_config(tmp_path, 'handler = "jsonl"\npath = "audit.jsonl"\n'))
    assert code == ExitCode.STORAGE, output
    assert f"storage error: {tmp_path / 'audit.jsonl'}: cannot open the audit file" in output


def test_a_handler_option_the_handler_refuses_names_the_configuration_file(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, 'handler = "jsonl"\npath = "audit.jsonl"\nsubject = ["chanlog.>"]\n')
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line == (
        f"chanlog: configuration error: {config}: [consumers.audit] the jsonl handler has no "
        "option 'subject' (it takes path, fsync)"
    )
