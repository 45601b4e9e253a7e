"""The ``chanlog`` command group: global options, opening the store, turning errors into
one-line messages with meaningful exit codes (see :mod:`chanlog.cli.errors`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from chanlog.bus.backoff import storage_retry_pause
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.output import Output
from chanlog.config import (
    CONFIG_FILENAME,
    DEFAULT_BACKEND,
    PYPROJECT_FILENAME,
    StoreConfig,
    file_backend,
    file_option_of,
    find_config,
    load_config,
    open_store,
    read_settings,
)
from chanlog.errors import (
    ChanlogError,
    ConfigError,
    DecodeError,
    InvalidTransition,
    NotFound,
    StorageError,
)
from chanlog.plugins.host import default_host
from chanlog.store import EventStore

__all__ = [
    "ChanlogGroup",
    "CliContext",
    "Terminated",
    "cli",
    "json_option",
    "pass_cli",
    "standard_output",
]


class CliContext:
    """What every command shares: where the configuration is, how to print, the open store.

    Args:
        config: an explicit configuration file (``--config``), or ``None`` to look in the
            current directory.
        db: a log file to use (``--db``): the configured backend's file when that backend
            keeps one, else a file of the default backend (SQLite).
        output: how to print.
        given_by: where each of ``config`` and ``db`` came from, by name (``"--db"`` or
            ``"CHANLOG_DB"``...), for the errors about a file that is not there.
    """

    def __init__(
        self,
        *,
        config: Path | None,
        db: Path | None,
        output: Output,
        given_by: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.output = output
        self.given_by = {"config": "--config", "db": "--db", **(given_by or {})}
        self._store: EventStore | None = None
        self._committed: int | None = None  # by a store opened to write, once it closed
        self._warned_of_pyproject = False

    def open_store(
        self,
        *,
        read_only: bool = False,
        create: bool = True,
        wait: float = 0.0,
        **overrides: Any,
    ) -> EventStore:
        """Open the configured store once; it is closed when the command ends.

        Every command that only reads opens with ``read_only=True``: that is what makes a
        misspelled ``--db`` or ``path`` exit 3 (not found), naming the log, with nothing
        created, whatever the backend.

        Args:
            read_only: the command only reads: open an existing log without creating one
                (a missing log exits 3, naming it), and refuse writes where the backend
                can (see :func:`chanlog.config.build_store`).
            create: with ``False``, a command that writes to a log that must already exist
                (not one that starts a log) is refused the same way when it does not.
            wait: seconds to keep trying while the store cannot be opened for a reason of
                its storage (a database server not up yet: a
                :class:`~chanlog.errors.StorageError`), saying so on stderr at each try;
                0 fails at once. Any other error fails at once either way.
            overrides: top-level settings replacing the configured ones (``verify``, ``log``
                and ``export`` open with ``projections=[]``: checking hashes and showing
                records must not depend on folding them).
        """
        if self._store is not None:
            return self._store
        source, settings = self._source(overrides)
        self._refuse_a_missing_db(read_only=read_only, create=create)
        try:
            store = _open_waiting(
                lambda: open_store(source, read_only=read_only, create=create, **settings),
                wait,
                self.output,
            )
        except (InvalidTransition, DecodeError) as exc:
            # Nothing the user typed is decoded or folded while opening: the stored log is.
            raise CliError(
                f"integrity failure: the stored log does not fold: {exc}; 'chanlog verify' "
                "checks its hashes, and 'chanlog log' shows its records without folding them",
                ExitCode.INTEGRITY,
            ) from exc
        self._store = store
        before = None if read_only else len(store)

        def close() -> None:
            # The command's context closes before its error reaches ChanlogGroup: count here.
            if before is not None:
                with contextlib.suppress(ChanlogError):  # say only what is certain
                    self._committed = len(store) - before
            store.close()

        click.get_current_context().call_on_close(close)
        return store

    def _refuse_a_missing_db(self, *, read_only: bool, create: bool) -> None:
        """Refuse a ``--db`` file that does not exist for a command that does not start a
        log, naming ``--db`` as where the name came from: the configuration's own check
        would name the configuration file, or ``<kwargs>``, which the operator never typed.

        Raises:
            NotFound: ``--db`` names no file and the command may not create one.
        """
        db = self.db
        if db is None or (create and not read_only) or os.path.lexists(db):
            return
        how = "opened read-only" if read_only else "the command needs a log that exists"
        raise NotFound(
            f"no log file {db.absolute()} (given by {self.given_by['db']}); {how}, so nothing "
            "was created"
        )

    def _refuse_a_missing_config(self) -> None:
        """Refuse a ``--config`` (or ``CHANLOG_CONFIG``) file that does not exist, saying
        which of the two named it: a variable set long ago is easy to forget.

        Raises:
            ConfigError: the file does not exist.
        """
        config = self.config
        if config is None or os.path.lexists(config):
            return
        relative = "" if config.is_absolute() else f", relative to {Path.cwd()}"
        raise ConfigError(
            f"{config}: no such configuration file (given by {self.given_by['config']}"
            f"{relative}); pass an existing file, or run 'chanlog init' to write one",
            source=str(config),
        )

    def _warn_of_a_shadowed_pyproject(self, found: Path | None) -> None:
        """Say once that a ``[tool.chanlog]`` table beside the ``chanlog.toml`` found is
        ignored: edits to it would otherwise take no effect, silently."""
        if self._warned_of_pyproject or found is None or found.name != CONFIG_FILENAME:
            return
        pyproject = found.with_name(PYPROJECT_FILENAME)
        if not pyproject.is_file():
            return
        try:
            read_settings(pyproject)
        except ConfigError:  # no [tool.chanlog] in it, or not TOML: nothing is ignored
            return
        self._warned_of_pyproject = True
        self.output.note(
            f"chanlog: using {found}; the [tool.chanlog] table of {pyproject} is ignored "
            f"({CONFIG_FILENAME} comes first): keep the settings in one of them"
        )

    def refused(self, error: CliError) -> CliError:
        """``error``, saying also how many records the command had committed before it,
        when it had (``import`` and ``generate`` commit batch by batch): they stay, and a
        reader of the message alone would take the refusal for the whole command's."""
        if not self._committed:
            return error
        return CliError(
            f"{error.format_message()}; the {self._committed} record(s) it had committed "
            "before stay in the log, whole",
            error.exit_code,
        )

    def interrupted(self, how: str = "interrupted") -> str:
        """What to say when Ctrl-C (or SIGTERM) ended the command: for one that writes, how
        many records it had committed (they stay: every batch commits whole or not at
        all)."""
        if self._committed is None:
            return how
        return (
            f"{how}; the {self._committed} record(s) it had committed stay in the log, "
            "whole; a batch it was writing, if any, was rolled back"
        )

    def _source(self, overrides: dict[str, Any]) -> tuple[Path | None, dict[str, Any]]:
        """The configuration file and the settings overriding it (``--db``)."""
        self._refuse_a_missing_config()
        source = self.config
        if source is None:
            source = find_config()
            self._warn_of_a_shadowed_pyproject(source)
        if source is None and self.db is None:
            raise CliError(
                f"no {CONFIG_FILENAME} (nor [tool.chanlog] in {PYPROJECT_FILENAME}) in "
                f"{Path.cwd()}: run 'chanlog init', or pass --config FILE or --db FILE",
                ExitCode.USAGE,
            )
        settings = dict(overrides)
        if self.db is not None:
            settings["backend"] = _db_backend(self.db, source)
        return source, settings

    def settings(self) -> StoreConfig:
        """The validated configuration the store is opened from (``--db`` applied)."""
        source, settings = self._source({})
        return load_config(source, **settings)


def _open_waiting(opener: Callable[[], EventStore], wait: float, output: Output) -> EventStore:
    """``opener()``, tried again after a :class:`~chanlog.errors.StorageError` for up to
    ``wait`` seconds (the bus's backoff: 0.1 s doubling to 5 s)."""
    deadline = time.monotonic() + wait
    failures = 0
    while True:
        try:
            return opener()
        except StorageError as exc:
            failures += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(storage_retry_pause(failures), left)
            output.note(f"the store cannot be opened yet ({exc}); trying again in {pause:.1f} s")
            time.sleep(pause)


def _db_backend(db: Path, source: Path | None) -> dict[str, Any]:
    """The ``backend`` setting for ``--db FILE``: the configured backend with FILE as its log
    file when it keeps one (its other options kept), else the default backend with FILE."""
    host = default_host()
    name, options = DEFAULT_BACKEND, {}
    if source is not None:
        configured = load_config(source, plugins=host)
        if file_option_of(host.backends[configured.backend]) is not None:
            name, options = configured.backend, dict(configured.backend_options)
    return {**options, **file_backend(db.absolute(), name=name, plugins=host)}


pass_cli = click.make_pass_decorator(CliContext)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_object(CliContext).output.json_mode = True  # type: ignore[union-attr]
    return value


json_option = click.option(
    "--json",
    "json_mode",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print JSON for machines instead of tables.",
)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is as Ctrl-C raises :class:`KeyboardInterrupt`, so
    that a service manager's stop ends it the same way: what it committed stays, whole, and
    it says how much (a command with its own handling, ``run``, sets its own)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM while the command runs, unless the process
    already handles SIGTERM (an embedding program) or this is not its main thread."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class ChanlogGroup(click.Group):
    """A click group that turns chanlog errors into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; map :class:`ChanlogError`, I/O errors and Ctrl-C."""
        debug = bool(ctx.params.get("debug"))
        try:
            with _sigterm_as_interrupt():
                return super().invoke(ctx)
        except CliError as exc:  # the command's own (a malformed line of an import)
            raise _with_what_it_committed(ctx, exc) from exc
        except ChanlogError as exc:
            if debug:
                raise
            raise _with_what_it_committed(ctx, CliError.from_error(exc)) from exc
        except KeyboardInterrupt as exc:
            how = "interrupted (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            state = ctx.find_object(CliContext)
            said = state.interrupted(how) if state is not None else how
            raise CliError(said, ExitCode.INTERRUPTED) from None
        except BrokenPipeError:
            # stdout closed by a pager or `head`: not an error worth a message.
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except OSError as exc:
            if debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise CliError(f"{where}{exc.strerror or exc}", ExitCode.STORAGE) from exc


def _with_what_it_committed(ctx: click.Context, error: CliError) -> CliError:
    state = ctx.find_object(CliContext)
    return error if state is None else state.refused(error)


def standard_output() -> TextIO:
    """Standard output, for a command whose output is the point (``log``, ``export -``).

    Raises:
        CliError: it is closed (the command started with ``1>&-``): Python then has no
            ``sys.stdout``, and the command would end in a traceback, or, were it written
            to nowhere, in a success that wrote nothing.
    """
    if sys.stdout is None:
        raise CliError(
            "standard output is closed (started with 1>&-): nothing can be written there; "
            "give a file, or redirect it",
            ExitCode.STORAGE,
        )
    return sys.stdout


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
    finally:
        os.close(devnull)


@click.group(cls=ChanlogGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CHANLOG_CONFIG",
    help=(
        f"Configuration file [default: ./{CONFIG_FILENAME}, else [tool.chanlog] in "
        f"./{PYPROJECT_FILENAME}]. Env: CHANLOG_CONFIG."
    ),
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CHANLOG_DB",
    help=(
        "Use this file as the log: the configured backend's file when it keeps one, else an "
        "SQLite file. Env: CHANLOG_DB."
    ),
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show progress bars on stderr [default: when stderr is a terminal].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for chanlog errors.")
@click.version_option(package_name="chanlog", prog_name="chanlog")
@click.pass_context
def cli(
    ctx: click.Context, config: Path | None, db: Path | None, progress: bool | None, debug: bool
) -> None:
    """chanlog: the event log of a state-channels node.

    Exit codes: 0 ok, 1 integrity failure, 2 usage or configuration error, 3 not found,
    4 input refused (nothing of the refused batch written), 5 storage or I/O error,
    130 interrupted.
    """
    given_by = {
        name: variable
        for name, variable in (("config", "CHANLOG_CONFIG"), ("db", "CHANLOG_DB"))
        if ctx.get_parameter_source(name) is click.core.ParameterSource.ENVIRONMENT
    }
    ctx.obj = CliContext(config=config, db=db, output=Output(progress=progress), given_by=given_by)
