"""How the CLI talks: rich tables for people, JSON for machines, progress bars on stderr.

rich is imported on first use: a command that prints only lines (``chanlog log``) starts
without it, which is a tenth of a second of its time to first line."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Output", "format_timestamp", "printable", "to_jsonable"]

WIDE_OUTPUT = 160
"""Columns of tables printed to something that is not a terminal."""

ProgressUpdate = Callable[[int], None]
"""Called with the number of items done so far."""


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


def printable(text: str) -> str:
    """``text`` with its control characters written as escapes (``\\x1b``, ``\\n``): what
    a log holds came from peers and plugins, and an escape sequence in a peer id or a
    handler's error must not move the operator's cursor, retitle the terminal or split a
    log line. Used for everything printed for people; JSON escapes its own."""
    return text if text.isprintable() else text.translate(_CONTROLS)


def format_timestamp(timestamp_ms: int) -> str:
    """An event timestamp (ms since the Unix epoch) as ISO 8601 UTC, to the millisecond; one
    after the year 9999, which no datetime holds (an event's may be up to 2**64 - 1), as
    its milliseconds."""
    try:
        # Integer arithmetic: ms / 1000 as a float is a millisecond off in the far future.
        moment = _EPOCH + datetime.timedelta(milliseconds=timestamp_ms)
    except OverflowError:
        return str(timestamp_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_jsonable(value: Any) -> Any:
    """Make ``value`` JSON-compatible: tuples become lists, ints beyond 64 bits strings,
    mappings with non-string keys get string keys (a state's dump is JSON-compatible already;
    this guards what the CLI builds itself)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    return str(value)


class Output:
    """Where and how a command prints.

    Args:
        json_mode: print JSON on stdout instead of tables.
        progress: show progress bars on stderr: ``True``, ``False``, or ``None`` for "when
            stderr is a terminal".
    """

    def __init__(self, *, json_mode: bool = False, progress: bool | None = None) -> None:
        self.json_mode = json_mode
        self._progress = progress
        self._stdout: Console | None = None
        self._stderr: Console | None = None

    @property
    def stdout(self) -> Console:
        """The rich console of stdout (tables)."""
        if self._stdout is None:
            from rich.console import Console

            console = Console(highlight=False)
            if not console.is_terminal and "COLUMNS" not in os.environ:
                # Piped tables (to a file, less, grep) need not fit an 80-column terminal.
                console = Console(highlight=False, width=WIDE_OUTPUT)
            self._stdout = console
        return self._stdout

    @property
    def stderr(self) -> Console:
        """The rich console of stderr (progress bars)."""
        if self._stderr is None:
            from rich.console import Console

            self._stderr = Console(stderr=True, highlight=False)
        return self._stderr

    @property
    def show_progress(self) -> bool:
        """Whether progress bars are shown: as asked, else when stderr is a terminal."""
        return self.stderr.is_terminal if self._progress is None else self._progress

    def json(self, value: Any) -> None:
        """Print one JSON document (indented) on stdout."""
        click.echo(orjson.dumps(to_jsonable(value), option=orjson.OPT_INDENT_2).decode())

    def table(
        self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Print a table for people; its title and cells as they are (a string in an event,
        ``[/]`` or ``[bold]``, is not rich markup), their control characters escaped
        (:func:`printable`)."""
        from rich.table import Table
        from rich.text import Text

        table = Table(title=None if title is None else Text(printable(title)), title_justify="left")
        last = len(columns) - 1
        for position, column in enumerate(columns):
            # Offsets, names and times stay whole; only the last column (ids, values) folds.
            table.add_column(column, overflow="fold", no_wrap=position < last)
        for row in rows:
            table.add_row(*(Text("" if cell is None else printable(str(cell))) for cell in row))
        self.stdout.print(table)

    def mapping(self, title: str | None, values: Mapping[str, Any]) -> None:
        """Print ``key: value`` pairs as a two-column table."""
        self.table(
            title, ("field", "value"), [(key, _cell(value)) for key, value in values.items()]
        )

    def line(self, text: str) -> None:
        """Print a line of text on stdout, as it is (no markup, no wrapping)."""
        click.echo(text)

    def note(self, text: str) -> None:
        """Print a line for people on stderr (kept out of machine-readable stdout)."""
        click.echo(text, err=True)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressUpdate]:
        """A progress bar on stderr; yields ``update(done)``. A no-op when disabled."""
        if not self.show_progress:
            yield lambda _done: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.stderr, transient=False) as bar:
            task = bar.add_task(description, total=total)

            def update(done: int) -> None:
                bar.update(task, completed=done)

            yield update
            if total is not None:
                bar.update(task, completed=total)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return ", ".join(f"{key}: {_cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value) if value else "[]"
    return str(value)
