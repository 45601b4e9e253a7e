"""Text an event carries is printed in tables as it is: never read as rich markup. Found by
the review of 2026-12-07: ``chanlog show message`` of a message whose peer id is ``[/]``
ended in a traceback (rich.errors.MarkupError: closing tag '[/]' at position 0 has nothing
to close), and a peer id ``[bold]x[/bold]`` was shown as ``x``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import Result

from chanlog.cli.demo_events import OBJECTIVE_ID
from cli.conftest import Run

MESSAGE_ID = "0x" + "cd" * 32


def show_message_with_peer(run: Run, peer_id: str) -> Result:
    """Append a message sent to ``peer_id`` and run ``chanlog show message`` of it."""
    sent = {
        "type": "message-sent",
        "payload": {
            "message_id": MESSAGE_ID,
            "objective_id": OBJECTIVE_ID,
            "peer_id": peer_id,
            "timestamp_ms": 1,
        },
    }
    assert run("append", orjson.dumps(sent).decode()).exit_code == 0
    result = run("show", "message", MESSAGE_ID)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("peer_id", ["[/]", "[bold]x[/bold]", "[link=https://example.org]y"])
def test_show_prints_text_that_looks_like_markup_as_it_is(
    demo_db: Path, run: Run, peer_id: str
) -> None:
    assert peer_id in show_message_with_peer(run, peer_id).stdout


def test_the_run_table_prints_a_last_error_that_looks_like_markup_as_it_is() -> None:
    # A handler's error is the consumer's last error, quoting whatever it was given.
    from rich.console import Console

    from chanlog.bus.worker import WorkerRow
    from chanlog.cli.commands.bus import _table

    error = "offset 3: KeyError: [/] in [bold]x[/bold]"
    row = WorkerRow("consumer", "tips", "running", 3, 0, 3, 0, error)
    console = Console(width=400, record=True)
    console.print(_table([row]))
    assert error in console.export_text()
