"""Shared helpers of the CLI tests: an in-process runner and a demo log to read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from chanlog.cli import cli
from chanlog.cli.demo_events import demo_events
from chanlog.codec import to_payload

Run = Callable[..., Result]


def envelope(index: int) -> dict[str, object]:
    """The demo event at ``index`` as an import envelope."""
    event = demo_events()[index]
    return {"type": event.event_type, "payload": to_payload(event)}


def jsonl(indexes: range | list[int]) -> str:
    """Demo events as JSONL text."""
    return "".join(orjson.dumps(envelope(index)).decode() + "\n" for index in indexes)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of a (not yet created) SQLite log."""
    return tmp_path / "log.db"


@pytest.fixture
def run(db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """Invoke ``chanlog --db DB ...`` in-process, from an empty working directory."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("CHANLOG_CONFIG", raising=False)
    monkeypatch.delenv("CHANLOG_DB", raising=False)

    def invoke(*args: str, input: str | bytes | None = None, use_db: bool = True) -> Result:
        prefix = ["--db", str(db)] if use_db else []
        return CliRunner().invoke(cli, [*prefix, *args], input=input, prog_name="chanlog")

    return invoke


@pytest.fixture
def demo_db(run: Run, db: Path) -> Path:
    """A SQLite log holding the 13 demo events."""
    result = run("import", "-", input=jsonl(range(13)))
    assert result.exit_code == 0, result.output
    return db
