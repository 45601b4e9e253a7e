"""The ``chanlog`` command on a PostgreSQL log, through the console script: ``init`` writes
a configuration that works once its commented ``dsn`` line is filled in (issue 18 item 8),
and reading commands refuse a schema that holds no log (item 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import chanlog
from chanlog.errors import NotFound

pytestmark = pytest.mark.postgres


def _chanlog(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("chanlog", path=os.path.dirname(sys.executable))
    assert script is not None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    return subprocess.run(
        [script, *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_the_written_config_works_once_dsn_is_set(
    postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    assert _chanlog("init", "--backend", "postgres", cwd=tmp_path).returncode == 0
    config = tmp_path / "chanlog.toml"
    text = config.read_text()
    text = text.replace('# dsn = ""', f'dsn = "{postgres_dsn}"')
    text = text.replace('# schema = "chanlog"', f'schema = "{schema}"')
    config.write_text(text)
    generated = _chanlog("generate", "--channels", "1", "--turns", "1", cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    verified = _chanlog("verify", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok: ")


def test_reading_commands_refuse_a_schema_holding_no_log(
    postgres_dsn: str, schema: str, admin: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """``chanlog verify`` on a misspelled schema: not found (exit 3), naming it, and the
    schema is not created (issue 18 item 1)."""
    config = tmp_path / "chanlog.toml"
    config.write_text(
        f'[backend]\nname = "postgres"\ndsn = "{postgres_dsn}"\nschema = "{schema}"\n'
    )
    for command in (["verify"], ["log"], ["stats"]):
        result = _chanlog("--config", str(config), *command, cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith("chanlog: not found: ")
        assert repr(schema) in result.stderr
    with pytest.raises(NotFound, match="holds no chanlog log"):
        chanlog.open(config, create=False)
    assert not admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
