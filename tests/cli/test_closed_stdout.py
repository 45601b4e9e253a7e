"""A command whose output is the point, started with its standard output closed (``1>&-``):
Python has no ``sys.stdout`` then, and ``log`` and ``export -`` ended in a traceback
(AttributeError: 'NoneType' object has no attribute 'write'). They now say so, exit 5
(found by the review of 2026-12-07)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cli.test_console_script import CHANLOG, assert_user_error, chanlog


def _with_stdout_closed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHANLOG is not None
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHANLOG_")}
    return subprocess.run(
        [CHANLOG, *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(1),
    )


@pytest.mark.parametrize("command", [("log",), ("export", "-")])
def test_a_command_writing_to_a_closed_standard_output_says_so(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    assert chanlog("--db", "node.db", "generate", "--channels", "1", cwd=tmp_path).returncode == 0
    result = _with_stdout_closed("--db", "node.db", *command, cwd=tmp_path)
    assert_user_error(result, 5, "standard output is closed (started with 1>&-)")
