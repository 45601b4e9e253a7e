"""``chanlog run`` without a terminal prints one log line per consumer whose figures
changed: a handler's error of several lines (an exception message with a newline) was
printed as it is, so the line broke in two and a log collector took its tail for a record
of its own. Line breaks are written as ``\\n`` and ``\\r``, as a stored error writes a NUL
as ``\\x00`` (ADR 0070)."""

from __future__ import annotations

import logging
import sys

import pytest

from chanlog.bus.worker import WorkerRow
from chanlog.cli.commands.bus import OneLineMessages, _plain


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("offset 3: RuntimeError: down\nretry later (at h.py:5)", r"down\nretry later"),
        ("offset 3: RuntimeError: down\r\nretry later (at h.py:5)", r"down\r\nretry later"),
    ],
)
def test_a_last_error_of_several_lines_stays_on_its_consumer_s_line(
    capsys: pytest.CaptureFixture[str], error: str, shown: str
) -> None:
    row = WorkerRow("consumer", "submitter", "running", 3, 2, 3, 1, error, None, 3)
    _plain([row], {})
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("consumer submitter: running position=3 lag=2 ")
    assert shown in line and line.endswith("(at h.py:5)")


def test_a_logged_message_of_several_lines_stays_on_one_line_and_its_traceback_follows() -> None:
    """The runner's own warnings (a failed try, a parked record) quote the handler's error
    too: ``chanlog run`` logs them one line each."""
    formatter = OneLineMessages("chanlog: %(name)s: %(message)s")
    try:
        raise RuntimeError("down\nretry later")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "chanlog.bus", logging.WARNING, "h.py", 5, "consumer %s: %s", ("c", "down\nlater"), exc_info
    )
    first, *traceback = formatter.format(record).splitlines()
    assert first == r"chanlog: chanlog.bus: consumer c: down\nlater"
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-2:] == ["RuntimeError: down", "retry later"]
