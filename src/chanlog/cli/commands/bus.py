"""``run``, ``consumers`` and ``ingest``: the bus from a terminal (DESIGN section 10)."""

from __future__ import annotations

import logging
import signal
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import click
from rich.live import Live
from rich.table import Table
from rich.text import Text

from chanlog.bus.ingest import IngestSource
from chanlog.bus.settings import BusSettings, IngestSettings
from chanlog.bus.spec import check_start
from chanlog.bus.worker import Worker, WorkerRow, check_something_to_run
from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode, exit_code_for
from chanlog.cli.output import printable
from chanlog.errors import ChanlogError, ConfigError, InvalidArgument
from chanlog.factories import option_problem
from chanlog.plugins.host import default_host
from chanlog.records import ParkedRecord

__all__ = ["OneLineMessages", "consumers_command", "ingest_command", "run_command"]

logger = logging.getLogger("chanlog.worker")

# "this run": this process's count since it started; "total": the consumer's, by every
# runner, as chanlog consumers shows it. Both once were "handled", and differed.
_COLUMNS = (
    "kind",
    "name",
    "state",
    "position",
    "lag",
    "handled (this run)",
    "handled (total)",
    "parked",
    "last error",
)


_STOPPING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)
"""What stops ``chanlog run`` after the record in hand: a service manager's stop, Ctrl-C,
and the terminal it ran in closing (SIGHUP, which would otherwise end it on the spot, its
leases held until they expire)."""


@contextmanager
def _stopping_on_signals(stop: Any) -> Iterator[None]:
    """The signals of :data:`_STOPPING_SIGNALS` ask ``stop()`` instead of killing the
    process."""
    previous = {sig: signal.getsignal(sig) for sig in _STOPPING_SIGNALS}

    def handle(_signum: int, _frame: Any) -> None:
        stop()

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _figure(value: int | None) -> str:
    """A figure the row may not have (an ingest has no position), as the table and the log
    lines show it."""
    return "-" if value is None else str(value)


def _cells(row: WorkerRow) -> list[str]:
    return [
        row.kind,
        row.name,
        row.state if row.holder is None else f"{row.state} (lease held by {row.holder})",
        _figure(row.position),
        _figure(row.lag),
        str(row.handled),
        _figure(row.handled_total),
        str(row.parked),
        row.last_error or "",
    ]


def _table(rows: Sequence[WorkerRow]) -> Table:
    table = Table(title="chanlog run (Ctrl-C, SIGTERM or SIGHUP stops after the record in hand)")
    for column in _COLUMNS:
        table.add_column(column, no_wrap=column != "last error", overflow="fold")
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in _cells(row)))  # not markup
    return table


def _plain(rows: Sequence[WorkerRow], last: dict[str, str]) -> None:
    """Log a line per consumer or ingest whose figures changed (for logs, not terminals)."""
    for row in rows:
        line = (
            f"{row.kind} {row.name}: {row.state} position={_figure(row.position)} "
            f"lag={_figure(row.lag)} handled_this_run={row.handled} "
            f"handled_total={_figure(row.handled_total)} "
            f"parked={row.parked}"
            + (f" lease_holder={row.holder}" if row.holder else "")
            + (f" last_error={printable(row.last_error)}" if row.last_error else "")
        )
        if last.get(row.name) != line:
            last[row.name] = line
            click.echo(line, err=True)


class OneLineMessages(logging.Formatter):
    """A formatter that writes a message's line breaks and other control characters as
    escapes (:func:`~chanlog.cli.output.printable`): a log line of ``chanlog run`` is one
    record of a log collector, whatever a handler's exception said (a traceback, logged
    with an error it explains, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, its message on one line."""
        return printable(super().formatMessage(record))


def _log_to_stderr() -> None:
    """Warnings of ``run`` and ``ingest`` (the worker's, the runners') as one line each on
    stderr, each starting ``chanlog: LOGGER:``, as their errors do."""
    to_stderr = logging.StreamHandler()
    to_stderr.setFormatter(OneLineMessages("chanlog: %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[to_stderr])


def _failed_exit_code(worker: Worker) -> ExitCode:
    """The exit code of a run whose threads died: what the first one's chanlog error tells
    (1 for an integrity failure such as a tap or read model that another log wrote), else
    a storage or I/O error (5)."""
    first = next(iter(worker.failures()), None)
    return exit_code_for(first) if isinstance(first, ChanlogError) else ExitCode.STORAGE


def _watch(worker: Worker, state: CliContext, refresh: float) -> None:
    """Show the figures until every thread has ended."""
    output = state.output
    if output.stdout.is_terminal and not output.json_mode:
        with Live(_table(worker.rows()), console=output.stdout, auto_refresh=False) as live:
            while not worker.wait(refresh):
                live.update(_table(worker.rows()), refresh=True)
            live.update(_table(worker.rows()), refresh=True)
        return
    last: dict[str, str] = {}
    while not worker.wait(refresh):
        _plain(worker.rows(), last)
    _plain(worker.rows(), last)


_wait_for_store = click.option(
    "--wait-for-store",
    "wait",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    envvar="CHANLOG_WAIT_FOR_STORE",
    show_envvar=True,
    help="Keep trying this long while the store cannot be opened for a reason of its storage "
    "(a database server not up yet) [default: 0, fail at once].",
)


@click.command("run")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="NAME",
    help="Run only this consumer or ingest (repeatable) [default: every one configured].",
)
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between updates of the table (or of the log lines when not on a terminal).",
)
@click.option(
    "--metrics",
    "metrics",
    metavar="HOST:PORT",
    default=None,
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (needs the chanlog-otel plugin).",
)
@_wait_for_store
@pass_cli
def run_command(
    state: CliContext, only: tuple[str, ...], refresh: float, metrics: str | None, wait: float
) -> None:
    """Run every durable consumer ([consumers.NAME]) and ingest ([ingest.NAME]) of the
    configuration until SIGTERM, Ctrl-C or SIGHUP: each finishes the record in hand,
    stores its position and gives its lease up; then exit 0."""
    _log_to_stderr()
    # Before the store opens: a store asks for its telemetry when it opens.
    stop_metrics = _serve_metrics(metrics) if metrics is not None else None
    try:
        _run(state, only, refresh, wait)
    finally:
        if stop_metrics is not None:
            stop_metrics()


def _metrics_address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(
            f"--metrics {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9464)", ExitCode.USAGE
        )
    return host.strip("[]"), int(port)


def _serve_metrics(text: str) -> Callable[[], None]:
    """Ask the first telemetry provider (a plugin's) to serve metrics at ``text``."""
    host, port = _metrics_address(text)
    providers = default_host().telemetry
    if not providers:
        raise CliError(
            "--metrics needs a telemetry plugin: pip install chanlog-otel "
            "(plugins/chanlog-otel in a checkout)",
            ExitCode.USAGE,
        )
    try:
        return cast(Callable[[], None], providers[sorted(providers)[0]].serve_metrics(host, port))
    except ConfigError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from exc


def _run(state: CliContext, only: tuple[str, ...], refresh: float, wait: float) -> None:
    settings = state.settings().bus
    names = {consumer.name for consumer in settings.consumers}
    names |= {ingest.name for ingest in settings.ingest}
    unknown = sorted(set(only) - names)
    if unknown:
        raise CliError(
            f"--only {unknown[0]}: no [consumers.{unknown[0]}] or [ingest.{unknown[0]}] in the "
            f"configuration (configured: {', '.join(sorted(names)) or 'none'})",
            ExitCode.USAGE,
        )
    check_something_to_run(settings, frozenset(only) if only else None)
    store = state.open_store(wait=wait)
    host = store.plugins
    worker = Worker(
        store,
        store.bus,
        settings,
        host.handlers,
        host.ingest_sources,
        frozenset(only) if only else None,
    )
    try:
        with _stopping_on_signals(worker.stop):
            worker.start()
            _watch(worker, state, refresh)
    finally:
        worker.close()
    failed = worker.failed()
    if failed and not worker.stopping:
        raise CliError("; ".join(failed), _failed_exit_code(worker))
    if failed:
        state.output.note("stopped; " + "; ".join(failed))


@click.group("consumers", invoke_without_command=True)
@json_option
@pass_cli
@click.pass_context
def consumers_command(ctx: click.Context, state: CliContext) -> None:
    """List the durable consumers: position, lag, parked records, who runs them, last
    error. Subcommands act on one."""
    if ctx.invoked_subcommand is not None:
        return
    store = state.open_store(read_only=True, projections=[])
    infos = store.bus.consumers.infos()
    output = state.output
    if output.json_mode:
        output.json([info.as_dict() for info in infos])
        return
    if not infos:
        output.note("no consumers (declare [consumers.NAME] tables and run 'chanlog run')")
        return
    output.table(
        None,
        (
            "name",
            "position",
            "lag",
            "handled (total)",
            "parked",
            "runner",
            "subjects",
            "last error",
        ),
        [
            (
                info.name,
                info.state.position,
                info.lag,
                info.state.handled,
                info.state.parked,
                info.state.lease_holder if info.running else "-",
                ", ".join(info.state.subjects),
                info.state.last_error or "",
            )
            for info in infos
        ],
    )


def _reset_target(value: str) -> str | int:
    """``--to``'s value as a consumer's start (:func:`~chanlog.bus.spec.check_start`).

    Raises:
        CliError: it is no start, before anything is opened.
    """
    try:
        return check_start(int(value) if value.isdigit() else value)
    except InvalidArgument:
        raise CliError(
            f"--to {value!r}: expected earliest, latest or an offset >= 0", ExitCode.USAGE
        ) from None


@consumers_command.command("reset")
@click.argument("name")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="earliest|latest|OFFSET",
    help="Where the consumer goes on from (backwards rebuilds what it feeds).",
)
@pass_cli
def reset_command(state: CliContext, name: str, to: str) -> None:
    """Move a stopped consumer's position."""
    target = _reset_target(to)
    store = state.open_store(projections=[], create=False)
    try:
        moved = store.bus.consumers.reset(name, target)
    except InvalidArgument as exc:
        raise CliError(f"{exc}", ExitCode.USAGE) from exc
    state.output.line(f"{name}: position {moved.position}")


@consumers_command.command("parked")
@click.argument("name")
@json_option
@pass_cli
def parked_command(state: CliContext, name: str) -> None:
    """The records a consumer parked, with their errors."""
    store = state.open_store(read_only=True, projections=[])
    parked = store.bus.consumers.parked(name)
    output = state.output
    if output.json_mode:
        output.json(
            [
                {
                    "offset": p.offset,
                    "event_id": p.event_id,
                    "type": p.event_type,
                    "attempts": p.attempts,
                    "error": p.error,
                    "parked_at": p.parked_at,
                    "replay": p.replay,
                }
                for p in parked
            ]
        )
        return
    if not parked:
        output.note(f"{name}: no parked records")
        return
    output.table(
        f"{name}: parked records",
        ("offset", "type", "attempts", "replay", "error"),
        [
            (p.offset, p.event_type, p.attempts, "asked" if p.replay else "", p.error)
            for p in parked
        ],
    )


_OFFSETS = click.option(
    "--offset",
    "offsets",
    multiple=True,
    type=click.IntRange(min=0),
    help="A parked record's offset (repeatable) [default: every parked record]; an offset "
    "the consumer did not park is refused (exit 3), nothing changed.",
)


def _anything_parked(
    state: CliContext, parked: Sequence[ParkedRecord], name: str, offsets: Sequence[int]
) -> bool:
    """Refuse an ``--offset`` the consumer did not park (a typo once said "0 parked
    record(s)" and exited 0), before anything changes; say so when nothing is parked (that
    too said "0 parked record(s)", like a count of records not found) and return whether
    there is anything to act on."""
    held = [p.offset for p in parked]
    if not held and not offsets:
        state.output.line(f"{name}: nothing is parked")
        return False
    missing = [offset for offset in offsets if offset not in held]
    if missing:
        raise CliError(
            f"not found: offset {missing[0]} is not parked for consumer {name!r} "
            f"(parked: {', '.join(map(str, held)) or 'none'}; "
            f"see chanlog consumers parked {name})",
            ExitCode.NOT_FOUND,
        )
    return True


@consumers_command.command("replay")
@click.argument("name")
@_OFFSETS
@pass_cli
def replay_command(state: CliContext, name: str, offsets: tuple[int, ...]) -> None:
    """Hand parked records to the handler again: the consumer's runner does it before going
    on (the record leaves the parked list once handled)."""
    store = state.open_store(projections=[], create=False)
    if _anything_parked(state, store.bus.consumers.parked(name), name, offsets):
        count = store.bus.consumers.replay(name, list(offsets) or None)
        state.output.line(f"{name}: {count} parked record(s) to replay")


@consumers_command.command("drop")
@click.argument("name")
@_OFFSETS
@pass_cli
def drop_command(state: CliContext, name: str, offsets: tuple[int, ...]) -> None:
    """Forget parked records (they are not handed to the handler again)."""
    store = state.open_store(projections=[], create=False)
    if _anything_parked(state, store.bus.consumers.parked(name), name, offsets):
        count = store.bus.consumers.drop(name, list(offsets) or None)
        state.output.line(f"{name}: dropped {count} parked record(s)")


def _option_value(text: str) -> Any:
    """``--key value`` values as TOML would read them (ints, floats, booleans), else text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _extra_options(args: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    items = list(args)
    while items:
        key = items.pop(0)
        if not key.startswith("--") or len(key) < 3:
            raise CliError(f"expected --option value, got {key!r}", ExitCode.USAGE)
        name, has_value, inline = key[2:].partition("=")
        if not has_value:
            if not items or items[0].startswith("--"):
                raise CliError(f"{key} needs a value", ExitCode.USAGE)
            inline = items.pop(0)
        options[name.replace("-", "_")] = _option_value(inline)
    return options


def _check_source_options(
    factory: Callable[..., Any], source: str, options: dict[str, Any]
) -> None:
    """Refuse an option the source does not take, or one it needs missing, before the log
    is opened (a refused command creates nothing)."""
    problem = option_problem(factory, options, ("name",))
    if problem is None:
        return
    kind, key, takes = problem
    if kind == "unknown":
        raise CliError(
            f"--{key.replace('_', '-')}: the {source} ingest source has no such option "
            f"(it takes {', '.join('--' + n.replace('_', '-') for n in takes)})",
            ExitCode.USAGE,
        )
    raise CliError(
        f"--{key.replace('_', '-')} is required by the {source} ingest source", ExitCode.USAGE
    )


@click.command(
    "ingest", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("source")
@click.option("--name", default=None, help="The ingest's name [default: the source's name].")
@_wait_for_store
@pass_cli
@click.pass_context
def ingest_command(
    ctx: click.Context, state: CliContext, source: str, name: str | None, wait: float
) -> None:
    """Feed the log from an external durable stream (an ingest source a plugin registered,
    e.g. 'nats'); further '--key value' options go to the source. Runs until SIGTERM,
    Ctrl-C or SIGHUP."""
    sources = default_host().ingest_sources
    if source not in sources:
        raise CliError(
            f"no ingest source named {source!r} "
            f"(installed: {', '.join(sorted(sources)) or 'none'})",
            ExitCode.USAGE,
        )
    options = _extra_options(ctx.args)
    _check_source_options(sources[source], source, options)
    _log_to_stderr()
    settings = BusSettings(ingest=(IngestSettings(name or source, source, options),))
    store = state.open_store(wait=wait)
    worker = Worker(store, store.bus, settings, {}, store.plugins.ingest_sources)
    ingest: IngestSource = worker.ingests[name or source]
    try:
        with _stopping_on_signals(worker.stop):
            worker.start()
            _watch(worker, state, 1.0)
    finally:
        worker.close()
    stats = ingest.stats()
    state.output.note(
        f"{ingest.name}: appended {stats.get('appended', 0)}, duplicates "
        f"{stats.get('duplicates', 0)}, parked {stats.get('parked', 0)}"
    )
    if worker.failed() and not worker.stopping:
        raise CliError("; ".join(worker.failed()), _failed_exit_code(worker))
