"""An entity id holding a NUL character (ADR 0070): no backend takes one, so ``import`` of
an export holding such a record is refused at its line, naming the type, the field and
the rule, with nothing of its batch written, on SQLite as on PostgreSQL (whose text
cannot hold a NUL at all); a SQLite log that already holds one (written before the rule)
is still read, verified and exported."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import chanlog
from chanlog.backends.sqlite import SqliteBackend
from chanlog.cli.errors import ExitCode
from chanlog.testing.events import stored_records
from chanlog.testing.plugins import EntityNoted
from installed_plugins import InstallPlugin, chanlog_cli

PLUGIN = """
import chanlog
from chanlog.testing.plugins import EntityNoted


@chanlog.hookimpl
def chanlog_register_event_types(register):
    register(EntityNoted)
"""

HELD = "left\x00right"

EVENTS = [
    EntityNoted(entity="First", timestamp_ms=1),
    EntityNoted(entity=HELD, note="written before the rule", timestamp_ms=2),
    EntityNoted(entity="last", timestamp_ms=3),
]


def legacy_log(path: Path, snapshot: bool) -> None:
    """A SQLite log holding :data:`EVENTS`, written as a store before ADR 0070 wrote them;
    with ``snapshot``, a snapshot's ``snapshot-created`` after the first of them."""
    if snapshot:
        with chanlog.open({"backend": {"name": "sqlite", "path": str(path)}}) as store:
            store.append(EVENTS[0])
            store.snapshot()
            assert len(store) == 2
    backend = SqliteBackend(path)
    try:
        with backend.write() as transaction:
            rest = EVENTS[1:] if snapshot else EVENTS
            transaction.append(stored_records(rest, transaction.head))
    finally:
        backend.close()


@pytest.fixture(params=[False, True], ids=["records", "a snapshot first"])
def exported(install_plugin: InstallPlugin, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The export of the legacy log, ``tmp_path/out.jsonl``; ``chanlog.toml`` names it."""
    install_plugin(PLUGIN)
    legacy_log(tmp_path / "node.db", request.param)
    (tmp_path / "chanlog.toml").write_text('[backend]\nname = "sqlite"\npath = "node.db"\n')
    result = chanlog_cli("export", "out.jsonl", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path / "out.jsonl"


def test_a_log_already_holding_one_is_still_read_verified_and_exported(
    exported: Path, tmp_path: Path
) -> None:
    lines = [orjson.loads(line) for line in exported.read_bytes().splitlines()]
    entities = [line["payload"].get("entity") for line in lines]
    assert [entity for entity in entities if entity is not None] == ["First", HELD, "last"]
    with chanlog.open({"backend": {"name": "sqlite", "path": str(tmp_path / "node.db")}}) as store:
        noted = [record.event for record in store if isinstance(record.event, EntityNoted)]
        assert noted == EVENTS
        assert [record.event for record in store.read_stream(HELD)] == [EVENTS[1]]
        assert store.verify() == len(lines)
    result = chanlog_cli("verify", cwd=tmp_path)
    assert result.exit_code == 0, result.output


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """``(dsn, schema)``: a schema of its own on the test server, dropped afterwards."""
    dsn = os.environ.get("CHANLOG_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("CHANLOG_TEST_POSTGRES_DSN is not set")
    psycopg = pytest.importorskip("psycopg")
    schema = f"chanlog_test_{uuid.uuid4().hex}"
    yield dsn, schema
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _target(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if name == "sqlite":
        return f'[backend]\nname = "sqlite"\npath = "{tmp_path / "copy.db"}"\n'
    dsn, schema = request.getfixturevalue("postgres_schema")
    return f'[backend]\nname = "postgres"\ndsn = "{dsn}"\nschema = "{schema}"\n'


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.parametrize("batch_size", [1000, 1])
def test_importing_one_is_refused_at_its_line_and_writes_nothing_of_its_batch(
    exported: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
    batch_size: int,
) -> None:
    config = tmp_path / "copy.toml"
    config.write_text(_target(backend, tmp_path, request))
    result = chanlog_cli(
        "--config",
        str(config),
        "import",
        "--batch-size",
        str(batch_size),
        str(exported),
        cwd=tmp_path,
    )
    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    line = 2 + ("snapshot" in request.node.callspec.id)
    assert f"{exported}:{line}" in result.output
    assert "conformance-entity-noted.entity" in result.output
    assert "NUL" in result.output
    assert "Traceback" not in result.output
    with chanlog.open(config) as store:
        # The batch holding the record wrote nothing (not even the piece before a
        # snapshot-created in it); with a batch a line, the lines before it stay.
        assert len(store) == (line - 1 if batch_size == 1 else 0)
        assert store.verify() == len(store)
