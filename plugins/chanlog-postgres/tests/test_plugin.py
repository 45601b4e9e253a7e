"""Loading the plugin does not import psycopg: every ``chanlog`` command loads the installed
plugins, and only a store on PostgreSQL needs the driver (issue 18 item 4: ``chanlog log``
shows its first line within half a second)."""

from __future__ import annotations

import subprocess
import sys

import chanlog_postgres
import pytest


def test_registering_the_backend_does_not_import_psycopg() -> None:
    code = (
        "import sys\n"
        "from chanlog.plugins import default_host\n"
        "factory = default_host().backends['postgres']\n"
        "assert 'psycopg' not in sys.modules, 'loading the plugin imported psycopg'\n"
        "assert 'dsn' in __import__('inspect').signature(factory).parameters\n"
        "assert 'psycopg' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_package_names_load_on_first_use() -> None:
    from chanlog_postgres.backend import PostgresBackend
    from chanlog_postgres.schema import SCHEMA_VERSION

    assert chanlog_postgres.PostgresBackend is PostgresBackend
    assert chanlog_postgres.SCHEMA_VERSION == SCHEMA_VERSION == 2
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = chanlog_postgres.Nope  # the module's __getattr__ refuses it
