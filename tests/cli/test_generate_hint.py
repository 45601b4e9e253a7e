"""``generate`` ends with a ``try: chanlog show channel ID --at N`` hint: N lies in the middle
of that channel's own events, so the command works and shows an earlier state (issue 18
item 6). Through the console script, as an operator would follow the hint."""

from __future__ import annotations

import shlex
from pathlib import Path

import orjson
import pytest

from cli.test_console_script import chanlog


def follow_the_hint(tmp_path: Path, *generate: str) -> tuple[dict[str, object], int]:
    """Run generate, then the command its hint suggests; return the state shown there and
    the channel's event count now."""
    result = chanlog("--db", "node.db", "generate", *generate, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    hint = result.stdout.strip().splitlines()[-1]
    assert hint.startswith("try: chanlog show channel ")
    arguments = shlex.split(hint.removeprefix("try: chanlog "))
    then = chanlog("--db", "node.db", *arguments, "--json", cwd=tmp_path)
    assert then.returncode == 0, (hint, then.stderr)
    now = chanlog("--db", "node.db", *arguments[:3], "--json", cwd=tmp_path)
    state: dict[str, object] = orjson.loads(then.stdout)["state"]
    count: int = orjson.loads(now.stdout)["state"]["event_count"]
    return state, count


@pytest.mark.parametrize(
    "shape",
    [
        ("--channels", "50", "--turns", "2"),
        (
            "--channels",
            "1",
        ),
    ],
)
def test_the_hint_shows_the_channel_part_way(tmp_path: Path, shape: tuple[str, ...]) -> None:
    state, now = follow_the_hint(tmp_path, *shape)
    assert 0 < state["event_count"] < now  # type: ignore[operator]


def test_the_hint_holds_in_a_log_that_already_held_events(tmp_path: Path) -> None:
    # Another workload first: the sample channel's events all come in the second half.
    first = chanlog("--db", "node.db", "generate", "--channels", "20", "--seed", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    state, now = follow_the_hint(tmp_path, "--channels", "2", "--turns", "4")
    assert 0 < state["event_count"] < now  # type: ignore[operator]


def test_json_output_names_the_offset(tmp_path: Path) -> None:
    result = chanlog("--db", "node.db", "generate", "--json", "--channels", "2", cwd=tmp_path)
    summary = orjson.loads(result.stdout)
    assert 0 < summary["sample_at"] < summary["log_length"]
