"""Text a log holds came from peers and plugins, and what is printed for people shows its
control characters as escapes (``\\x1b``) instead of sending them to the terminal: an
escape sequence in a peer id could move the cursor, recolour or retitle the operator's
terminal, or hide the lines around it (found by the review of 2026-12-07: ``chanlog show``
printed ESC as it is). JSON output escapes its own."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chanlog.bus.worker import WorkerRow
from chanlog.cli.commands.bus import _plain
from chanlog.cli.errors import CliError
from chanlog.cli.output import printable
from cli.conftest import Run
from cli.test_text_in_tables import MESSAGE_ID, show_message_with_peer

HOSTILE = "peer\x1b]0;owned\x07\x1b[2J\x9b31m\x7f"
SHOWN = r"peer\x1b]0;owned\x07\x1b[2J\x9b31m\x7f"


def _controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0]


@given(st.text())
def test_printable_text_holds_no_control_character_and_keeps_the_rest(text: str) -> None:
    shown = printable(text)
    assert not [c for c in shown if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]
    if not _controls(text) and "\n" not in text:
        assert shown == text


def test_show_prints_a_peer_id_s_escape_sequence_as_text(demo_db: Path, run: Run) -> None:
    result = show_message_with_peer(run, HOSTILE)
    assert SHOWN in result.stdout
    assert _controls(result.stdout) == []
    as_json = orjson.loads(run("show", "message", MESSAGE_ID, "--json").stdout)
    assert as_json["state"]["peer_id"] == HOSTILE


def test_run_s_log_line_prints_an_error_s_escape_sequence_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    row = WorkerRow("consumer", "c", "running", 3, 0, 3, 1, f"offset 2: KeyError: {HOSTILE}")
    _plain([row], {})
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(f"last_error=offset 2: KeyError: {SHOWN}")


def test_an_error_message_prints_an_escape_sequence_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    CliError(f"refused: {HOSTILE}").show()
    assert capsys.readouterr().err == f"chanlog: refused: {SHOWN}\n"
