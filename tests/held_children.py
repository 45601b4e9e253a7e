"""Child processes that each open a log, say so in a line and hold it open until told to
go (their standard input closes): what many processes opening one log at once say."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

__all__ = ["first_lines_of_held_children"]


def first_lines_of_held_children(commands: Sequence[list[str]], timeout: float = 60) -> list[str]:
    """Start every command, read the first line each prints (all are running by then), let
    them go, and return those lines."""
    children = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for command in commands
    ]
    said = []
    for child in children:
        assert child.stdout is not None
        said.append(child.stdout.readline().strip())
    for child in children:
        child.communicate("", timeout=timeout)
    return said
