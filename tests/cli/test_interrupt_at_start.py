"""Ctrl-C while ``chanlog`` starts (importing chanlog and loading its plugins, about half a
second before any command runs) ends it with ``chanlog: interrupted`` and exit code 130, as
later: it printed a ``KeyboardInterrupt`` traceback and died by the signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.test_console_script import CHANLOG, chanlog


def _script() -> str:
    """What the installed console script does, once Python runs, after saying so."""
    assert CHANLOG is not None
    [entry] = [line for line in Path(CHANLOG).read_text().splitlines() if " import " in line]
    return f"import sys; print('started', file=sys.stderr, flush=True); {entry}; sys.exit(main())"


@pytest.mark.parametrize("command", [["run"], ["stats"], ["generate"]])
def test_ctrl_c_while_chanlog_starts_is_one_line_and_exit_130(
    tmp_path: Path, command: list[str]
) -> None:
    assert chanlog("init", cwd=tmp_path).returncode == 0
    config = tmp_path / "chanlog.toml"
    config.write_text(config.read_text() + '\n[consumers.a]\nhandler = "jsonl"\npath = "a"\n')
    process = subprocess.Popen(
        [sys.executable, "-c", _script(), *command],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == "started\n"
        # Past the entry point's first lines, well within chanlog's import (~0.3 s at best).
        time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait(timeout=10)
    assert (process.returncode, stdout) == (130, ""), stderr
    assert stderr == "chanlog: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chanlog.toml"]
