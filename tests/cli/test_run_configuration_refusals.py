"""``chanlog run`` refusing a configuration it cannot run as written: the message names the
configuration file and the key, and a refusal found before the log is opened creates no
log (found by an operator's walk through the guides)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import chanlog
from chanlog.cli import cli
from chanlog.cli.demo_events import demo_events
from chanlog.cli.errors import ExitCode
from chanlog.errors import ConfigError


def _run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "run", *args], prog_name="chanlog")
    return result.exit_code, result.output


def _config(tmp_path: Path, tables: str) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(f'[backend]\nname = "sqlite"\npath = "node.db"\n\n{tables}')
    return config


@pytest.mark.parametrize(
    ("first", "second"),
    [("jsonl", "jsonl"), ("jsonl", "channel-read-model"), ("channel-read-model", "jsonl")],
)
def test_two_consumers_writing_one_handler_file_are_refused_before_the_log_is_opened(
    tmp_path: Path, first: str, second: str
) -> None:
    """Two taps on one file each wrote every record into it: the file held each record
    twice, interleaved, and each tap took the other's lines for its own position."""
    config = _config(
        tmp_path,
        f'[consumers.audit]\nhandler = "{first}"\npath = "shared.out"\n\n'
        f'[consumers.backup]\nhandler = "{second}"\npath = "./shared.out"\n',
    )
    # First, so that a configuration accepted fails here rather than run until stopped.
    with pytest.raises(ConfigError) as refused:
        chanlog.load_config(config)
    assert refused.value.key == "consumers.backup.path"
    assert refused.value.source == str(config)
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line == (
        f"chanlog: configuration error: {config}: consumers.backup.path = "
        f"'{tmp_path / 'shared.out'}' is also the file of consumers.audit.path: two "
        "consumers writing one file mix their records; give each its own file"
    )
    assert not (tmp_path / "node.db").exists()
    assert not (tmp_path / "shared.out").exists()


def test_consumers_with_files_of_their_own_are_accepted(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        '[consumers.audit]\nhandler = "jsonl"\npath = "audit.jsonl"\n\n'
        '[consumers.channels]\nhandler = "channel-read-model"\npath = "audit.jsonl.db"\n',
    )
    assert [c.name for c in chanlog.load_config(config).bus.consumers] == ["audit", "channels"]


def test_a_configuration_with_nothing_to_run_is_refused_naming_it_and_creating_no_log(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "")
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line == (
        f"chanlog: configuration error: {config}: nothing to run: the configuration declares "
        "no [consumers.NAME] or [ingest.NAME] table"
    )
    assert not (tmp_path / "node.db").exists()


def test_a_new_consumer_starting_beyond_the_end_is_refused_naming_the_configuration(
    tmp_path: Path,
) -> None:
    config = _config(
        tmp_path, '[consumers.late]\nhandler = "jsonl"\npath = "late.jsonl"\nstart = 100\n'
    )
    with chanlog.open(config) as store:
        store.append_batch(demo_events()[:3])
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line.startswith(
        f"chanlog: configuration error: {config}: consumers.late.start = 100 is beyond the "
        "end of the log (3 records); "
    )
    assert not (tmp_path / "late.jsonl").exists()
