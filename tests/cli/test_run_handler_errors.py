"""``chanlog run`` with a handler that cannot be built: a mistake in its options names the
configuration file, and a file it cannot open is a storage error (exit 5) naming that file,
as the channel read model's is."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import chanlog
from chanlog.bus.jsonl_tap import JsonlTap
from chanlog.bus.worker import Worker
from chanlog.cli import cli
from chanlog.cli.demo_events import demo_events
from chanlog.cli.errors import ExitCode
from chanlog.errors import ConfigError
from chanlog.workload import Workload, WorkloadConfig


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
    config = _config(tmp_path, 'handler = "jsonl"\npath = "audit.jsonl"\nfsync = "yes"\n')
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line == (
        f"chanlog: configuration error: {config}: [consumers.audit] jsonl: fsync must be true "
        "or false, got 'yes'"
    )


def test_an_option_the_handler_does_not_take_is_refused_as_the_configuration_is_read(
    tmp_path: Path,
) -> None:
    # A typo of the consumer's own `subjects`: what is allowed lists both kinds of keys.
    config = _config(tmp_path, 'handler = "jsonl"\npath = "audit.jsonl"\nsubject = ["chanlog.>"]\n')
    code, output = _run(config)
    assert code == ExitCode.USAGE, output
    [line] = output.strip().splitlines()
    assert line == (
        f"chanlog: configuration error: {config}: consumers.audit.subject: unknown key of the "
        "jsonl handler (allowed: fsync, path; and handler, subjects, start, max_deliver, "
        "backoff, commit_every, lease_ttl, batch_size, commit_interval_ms)"
    )


@pytest.mark.parametrize(
    ("handler", "path"),
    [("channel-read-model", "node.db"), ("jsonl", "node.db"), ("jsonl", "node.db-head")],
)
def test_a_handler_file_that_is_the_log_s_own_is_refused_before_it_is_touched(
    tmp_path: Path, handler: str, path: str
) -> None:
    config = _config(tmp_path, f'handler = "{handler}"\npath = "{path}"\n')
    log = tmp_path / "node.db"
    with chanlog.open(config) as store:
        store.append_batch(demo_events()[:3])
    tables = _tables(log)
    head = (tmp_path / "node.db-head").read_bytes()
    settings = chanlog.load_config(config)
    # What `chanlog run` builds its consumers with, on the store it opened.
    with chanlog.open(config) as store, pytest.raises(ConfigError) as refused:
        Worker(store, store.bus, settings.bus, store.plugins.handlers, {}).close()
    assert str(refused.value) == (
        f"{config}: consumers.audit.path = '{tmp_path / path}' is a file of the log itself "
        f"({log}): give the {handler} handler a file of its own"
    )
    assert refused.value.key == "consumers.audit.path"
    assert _tables(log) == tables
    assert (tmp_path / "node.db-head").read_bytes() == head
    with chanlog.open(config, read_only=True) as store:
        assert store.verify() == 3


def _tables(log: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{log}?mode=ro", uri=True)) as db:
        return sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master"))


def test_an_audit_file_of_another_log_is_an_integrity_failure_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The tap refuses a file whose last line is not this log's record (its bind): ``run``
    exits 1, as for any integrity failure, and says why once per place, with no traceback
    (a chanlog error is a message, not a crash)."""
    config = _config(tmp_path, 'handler = "jsonl"\npath = "audit.jsonl"\n')
    other = tmp_path / "other.db"
    with chanlog.open({"backend": {"name": "sqlite", "path": str(other)}}) as store:
        store.append_batch(next(Workload(WorkloadConfig(seed=7, channels=1)).batches(3)))
        with store.bus.consumer("audit", JsonlTap(path=tmp_path / "audit.jsonl")) as runner:
            runner.drain()
    with chanlog.open({"backend": {"name": "sqlite", "path": str(tmp_path / "node.db")}}) as store:
        store.append_batch(demo_events())
    before = (tmp_path / "audit.jsonl").read_bytes()
    code, output = _run(config)
    assert code == ExitCode.INTEGRITY, output
    [failed] = [r for r in caplog.records if r.name == "chanlog.worker"]
    assert failed.exc_info is None and "offset 2" in failed.getMessage()
    assert "the file's last line is the record at offset 2" in output
    assert (tmp_path / "audit.jsonl").read_bytes() == before
