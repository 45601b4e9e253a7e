"""An event given twice in one batch is appended once: ``append`` and ``import`` count it
once as appended, and its repetition as already present. Found by the review of
2026-12-07: both counted every repetition as appended (``append --json`` of one event given
twice said ``"appended": 2`` with the log one record longer; an import of 13 events with 3
lines repeated said 16 appended, log length 13)."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from chanlog.cli import cli
from cli.conftest import Run, envelope, jsonl


def test_append_counts_an_event_given_twice_once(run: Run) -> None:
    text = orjson.dumps(envelope(0)).decode()
    result = run("append", "--json", text, text)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {
        "offsets": [0, 0],
        "appended": 1,
        "already_present": 1,
    }
    table = run("append", orjson.dumps([envelope(1), envelope(1)]).decode())
    assert table.exit_code == 0, table.output
    statuses = [line.split("│")[3].strip() for line in table.stdout.splitlines() if "│ 1" in line]
    assert statuses == ["new", "present"]


@settings(max_examples=20, deadline=None)
@given(repeats=st.lists(st.integers(0, 12), max_size=6), batch_size=st.integers(1, 20))
def test_import_counts_each_event_once(
    tmp_path_factory: pytest.TempPathFactory, repeats: list[int], batch_size: int
) -> None:
    folder = tmp_path_factory.mktemp("import")
    lines = jsonl(range(13)).splitlines(keepends=True)
    for index in sorted(repeats, reverse=True):
        lines.insert(index + 1, lines[index])  # the repetition right after its line
    source = folder / "events.jsonl"
    source.write_text("".join(lines))
    db = str(folder / "log.db")
    command = ["--db", db, "import", "--json", "--batch-size", str(batch_size), str(source)]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {
        "read": 13 + len(repeats),
        "appended": 13,
        "already_present": len(repeats),
        "exact_copy": False,
        "snapshots_rebuilt": 0,
    }
    again = CliRunner().invoke(cli, command)
    assert orjson.loads(again.stdout)["appended"] == 0
