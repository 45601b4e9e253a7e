"""Exit codes and the one-line error every user mistake becomes (ADR 0015).

| code | meaning |
|---|---|
| 0 | success |
| 1 | integrity failure: the log does not match its hashes, or a stored record is unreadable |
| 2 | usage or configuration error (bad option, bad chanlog.toml, missing plugin) |
| 3 | not found (unknown entity, event id or snapshot) |
| 4 | invalid input refused (malformed JSON line, invalid event, illegal transition, version
      conflict); nothing of the refused batch was written |
| 5 | storage error (the backend failed, or the file is not a chanlog database) |
| 130 | interrupted (Ctrl-C, or SIGTERM but in ``run`` and ``ingest``, which stop cleanly, exit 0) |
"""

from __future__ import annotations

import enum
from typing import IO, Any

import click

from chanlog.cli.output import printable
from chanlog.errors import (
    ChanlogError,
    ConcurrencyError,
    ConfigError,
    DecodeError,
    IntegrityError,
    InvalidArgument,
    InvalidEvent,
    InvalidTransition,
    NotFound,
    PluginError,
    StorageError,
)

__all__ = ["CliError", "ExitCode", "exit_code_for"]


class ExitCode(enum.IntEnum):
    """The process exit codes of the ``chanlog`` command."""

    OK = 0
    INTEGRITY = 1
    USAGE = 2
    NOT_FOUND = 3
    INVALID_INPUT = 4
    STORAGE = 5
    INTERRUPTED = 130


def exit_code_for(error: ChanlogError) -> ExitCode:
    """The exit code that tells a script what kind of failure ``error`` is."""
    if isinstance(error, IntegrityError):
        return ExitCode.INTEGRITY
    if isinstance(error, DecodeError) and error.offset is not None:
        # A stored record that no longer decodes: the log itself is damaged.
        return ExitCode.INTEGRITY
    if isinstance(error, ConfigError | PluginError):
        return ExitCode.USAGE
    if isinstance(error, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(
        error, InvalidEvent | DecodeError | InvalidTransition | ConcurrencyError | InvalidArgument
    ):
        return ExitCode.INVALID_INPUT
    if isinstance(error, StorageError):
        return ExitCode.STORAGE
    return ExitCode.INVALID_INPUT


class CliError(click.ClickException):
    """A user error: printed as one line on stderr (no traceback), with its exit code."""

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE) -> None:
        super().__init__(_one_line(message))
        # click declares exit_code as a class variable; each instance carries its own.
        setattr(self, "exit_code", int(exit_code))  # noqa: B010

    @classmethod
    def from_error(cls, error: ChanlogError) -> CliError:
        """Wrap a chanlog error, prefixed with its kind (``integrity failure: ...``)."""
        code = exit_code_for(error)
        prefix = {
            ExitCode.INTEGRITY: "integrity failure",
            ExitCode.USAGE: "configuration error" if isinstance(error, ConfigError) else "error",
            ExitCode.NOT_FOUND: "not found",
            ExitCode.INVALID_INPUT: "refused",
            ExitCode.STORAGE: "storage error",
        }.get(code, "error")
        return cls(f"{prefix}: {error}", code)

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``chanlog: <message>`` on stderr."""
        click.echo(f"chanlog: {printable(self.format_message())}", file=file, err=True)


def _one_line(message: str) -> str:
    return " ".join(message.split())
