"""The ``chanlog`` command as an operator meets it: how soon ``chanlog log`` shows the first
record of a big log, through a real process (start-up included).

The process runs with the package's bytecode compiled, as an installed chanlog has it (a
checkout run with ``PYTHONDONTWRITEBYTECODE``, as these machines set it, would otherwise
compile every module on every start, which is not what a user waits for).
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from benchmarks.config import Config
from benchmarks.harness import Case, Contender
from benchmarks.logs import LogCache

__all__ = ["cases", "first_record_line"]


def _chanlog_script() -> str:
    script = shutil.which("chanlog", path=os.path.dirname(sys.executable))
    if script is None:
        raise RuntimeError("the chanlog console script is not installed next to this python")
    return script


def _compile_bytecode() -> None:
    """Compile chanlog and the plugin packages its entry points load (what ``pip install``
    does), so the measured start-up is an installed one."""
    packages = {"chanlog"}
    packages |= {entry.module.split(".")[0] for entry in entry_points(group="chanlog")}
    for name in sorted(packages):
        spec = importlib.util.find_spec(name)
        for directory in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(directory, quiet=1)


def first_record_line(command: list[str], cwd: Path) -> float:
    """Seconds from starting ``command`` to the first line of its stdout that is a record
    (a table row starting with its offset, or a JSON line); the process is then killed.

    Raises:
        RuntimeError: the process ended without printing a record.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        for line in process.stdout or ():
            if line.lstrip()[:1].isdigit() or line.startswith(b"{"):
                return time.perf_counter() - started
        raise RuntimeError(f"{command}: no record line (exit {process.wait()})")
    finally:
        process.kill()
        process.wait()


def _first_line(logs: LogCache, total: int, target: int, json_mode: bool) -> Callable[[], float]:
    def trial() -> float:
        path = logs.sqlite(total, target)  # built once, by the first trial (untimed)
        _compile_bytecode()
        command = [_chanlog_script(), "--db", str(path), "log", *(["--json"] if json_mode else [])]
        return first_record_line(command, path.parent)

    return trial


def cases(config: Config, logs: LogCache) -> list[Case]:
    """Time to the first line of ``chanlog log``."""
    total = config.size(300_000, 20_000)
    target = min(1_000, total // 2)
    reps = config.reps(9)
    note = (
        "From starting the process to reading the first record line on its stdout (a pipe), "
        "median of the runs; start-up, plugin loading, opening the log read-only and the "
        "first read included. chanlog log prints records as it reads them, so the figure "
        "does not grow with the log."
    )
    return [
        Case(
            "log.first-line.300k",
            f"chanlog log: first record line, {total:,}-event sqlite log (process start included)",
            "latency",
            1,
            [Contender("chanlog", _first_line(logs, total, target, json_mode=False))],
            reps,
            note,
        ),
        Case(
            "log.first-line.300k.json",
            f"chanlog log --json: first record line, {total:,}-event sqlite log",
            "latency",
            1,
            [Contender("chanlog", _first_line(logs, total, target, json_mode=True))],
            reps,
            "As the row above, with --json: one export line per record.",
        ),
    ]
