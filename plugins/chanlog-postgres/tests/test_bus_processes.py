"""Issue 15's end-to-end scenarios on PostgreSQL: ``chanlog run`` processes sharing one
schema (the scenarios are those of ``tests/bus``, run against a postgres ``[backend]``)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bus.processes import cli, environment, write_config
from bus.scenarios import (
    lease_takeover,
    park_then_replay,
    sigkill_at_random_moments,
    three_consumers_over_a_big_log,
)
from chanlog.cli.errors import ExitCode

KILLS = 22
LEASE_TTL = 1.5


def _backend(dsn: str, schema: str) -> dict[str, object]:
    return {"name": "postgres", "dsn": dsn, "schema": schema}


@pytest.mark.slow
def test_sigkill_at_random_moments_never_skips_a_record(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    report = sigkill_at_random_moments(_backend(postgres_dsn, schema), tmp_path, KILLS, seed=27)
    assert report.kills == KILLS
    assert report.rounds_with_redelivery >= 5, report


def test_a_failing_record_is_parked_shown_and_replayed(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    park_then_replay(_backend(postgres_dsn, schema), tmp_path)


def test_a_second_worker_waits_then_takes_over_within_the_lease(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    takeover = lease_takeover(_backend(postgres_dsn, schema), tmp_path, LEASE_TTL)
    assert takeover.seconds < LEASE_TTL + 2.0, takeover


@pytest.mark.slow
def test_chanlog_run_with_three_consumers_over_100k_events_then_live(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    three_consumers_over_a_big_log(_backend(postgres_dsn, schema), tmp_path, 100_000)


def _schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    return bool(found and found[0])


def test_bad_consumers_are_refused_before_anything_is_written(
    tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    env = environment()
    backend = _backend(postgres_dsn, schema)
    write_config(tmp_path, backend, {"x": {"handler": "nope"}})
    unknown = cli("run", cwd=tmp_path, env=env)
    assert unknown.returncode == ExitCode.USAGE
    assert "consumers.x.handler: no handler named 'nope'" in unknown.stderr
    assert not _schema_exists(postgres_dsn, schema)  # the log was not even created

    write_config(
        tmp_path, backend, {"far": {"handler": "jsonl", "path": "far.jsonl", "start": 10_000}}
    )
    made = cli("generate", "--channels", "1", "--turns", "1", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    beyond = cli("run", cwd=tmp_path, env=env)
    assert beyond.returncode == ExitCode.USAGE
    assert "consumers.far.start = 10000 is beyond the end of the log" in beyond.stderr
    assert not (tmp_path / "far.jsonl").exists()
    reset = cli("consumers", "reset", "far", "--to", "earliest", cwd=tmp_path, env=env)
    assert reset.returncode == ExitCode.NOT_FOUND
    assert reset.stderr == "chanlog: not found: no consumer named 'far' (consumers: none)\n"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        rows = connection.execute(f"SELECT count(*) FROM {schema}.consumers").fetchone()
    assert rows == (0,)
