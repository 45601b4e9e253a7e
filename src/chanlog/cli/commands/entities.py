"""``show``, ``snapshot`` and ``demo``: entity state now and at any earlier offset."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode
from chanlog.cli.output import format_timestamp
from chanlog.cli.records_io import export_line
from chanlog.config import file_backend, open_store
from chanlog.errors import InvalidArgument
from chanlog.snapshots.codec import base_reference
from chanlog.store import EventStore

__all__ = ["demo_command", "show_command", "snapshot_command"]


def _state_data(store: EventStore, kind: str, entity_id: str, at: int | None) -> Any:
    """:meth:`~chanlog.reconstruct.StateReconstructor.state_data`; the store's
    :class:`InvalidArgument` (an unknown kind, a malformed id, ``at`` beyond the end of the
    log) is a usage error here, with its message."""
    try:
        return store.reconstructor.state_data(kind, entity_id, at)
    except InvalidArgument as exc:
        raise CliError(str(exc), ExitCode.USAGE) from exc


@click.command("show")
@click.argument("kind", metavar="objective|channel|message|KIND")
@click.argument("entity_id", metavar="ID")
@click.option("--at", type=click.IntRange(min=0), help="State after the events before this offset.")
@json_option
@pass_cli
def show_command(state: CliContext, kind: str, entity_id: str, at: int | None) -> None:
    """Show the state of an objective, a channel or a message (or any projection's entity),
    now or, with --at, as it was before that offset (time travel)."""
    store = state.open_store(read_only=True)
    data = _state_data(store, kind, entity_id, at)
    output = state.output
    if output.json_mode:
        output.json({"kind": kind, "id": entity_id, "at": at, "state": data})
        return
    when = "now" if at is None else f"before offset {at}"
    # A projection's state may be anything it folds to (a plugin's total is an int).
    output.mapping(
        f"{kind} {entity_id} ({when})", data if isinstance(data, Mapping) else {kind: data}
    )


@click.command("snapshot")
@click.option(
    "--at", type=click.IntRange(min=0), help="Snapshot the state before this offset [default: end]."
)
@json_option
@pass_cli
def snapshot_command(state: CliContext, at: int | None) -> None:
    """Snapshot the projections now (or as of --at) and append snapshot-created."""
    store = state.open_store()
    try:
        snapshot = store.snapshot(at)
    except InvalidArgument as exc:  # an --at beyond the end: a usage error, as for `show`
        raise CliError(f"--at: {exc}", ExitCode.USAGE) from exc
    reference = base_reference(snapshot)  # the snapshot an incremental one is taken on
    result = {
        "offset": snapshot.offset,
        "snapshot_hash": "0x" + snapshot.snapshot_hash.hex(),
        "versions": snapshot.versions,
        "bytes": len(snapshot.data),
        "base": None if reference is None else reference[0],
        "log_length": len(store),
    }
    if state.output.json_mode:
        state.output.json(result)
    else:
        state.output.mapping("snapshot", result)


@contextmanager
def _demo_store(state: CliContext) -> Iterator[tuple[EventStore, str]]:
    """The store named by --config/--db, else a temporary SQLite log removed afterwards."""
    if state.config is not None or state.db is not None:
        store = state.open_store()
        yield store, str(getattr(store.backend, "path", store.backend.name))
        return
    with tempfile.TemporaryDirectory(prefix="chanlog-demo-") as directory:
        path = Path(directory) / "demo.db"
        with open_store(backend=file_backend(path)) as store:
            yield store, f"{path} (temporary)"


@click.command("demo")
@click.option(
    "--at",
    type=click.IntRange(min=1),
    default=None,
    help="The earlier offset to time-travel to [default: 6, before the deposits].",
)
@json_option
@pass_cli
def demo_command(state: CliContext, at: int | None) -> None:
    """Append a DirectFund objective's lifecycle, reconstruct it, print the log, then show
    the objective and its channel at an earlier offset (time travel).

    Uses a temporary SQLite log unless --db or --config names one.
    """
    from chanlog.cli.demo_events import CHANNEL_ID, OBJECTIVE_ID, TIME_TRAVEL_OFFSET, demo_events

    events = demo_events()
    earlier = TIME_TRAVEL_OFFSET if at is None else at
    output = state.output
    with _demo_store(state) as (store, where):
        offsets = store.append_batch(events)
        if earlier > len(store):
            raise CliError(f"--at {earlier} is beyond the end of the log ({len(store)})")
        first, last = offsets[0], offsets[-1] + 1
        records = list(store.read_range(first, last))
        now = {
            "objective": _state_data(store, "objective", OBJECTIVE_ID, None),
            "channel": _state_data(store, "channel", CHANNEL_ID, None),
        }
        then = {
            "objective": _state_data(store, "objective", OBJECTIVE_ID, earlier),
            "channel": _state_data(store, "channel", CHANNEL_ID, earlier),
        }
        verified = store.verify()
        if output.json_mode:
            output.json(
                {
                    "store": where,
                    "log": [export_line(record) for record in records],
                    "now": now,
                    "time_travel": {"at": earlier, **then},
                    "verified": verified,
                }
            )
            return
        output.line(f"chanlog demo: a DirectFund objective funding a channel, logged in {where}")
        output.line("")
        output.table(
            f"the log ({len(records)} events appended)",
            ("offset", "type", "timestamp (UTC)", "entity"),
            [
                (
                    record.offset,
                    record.event_type,
                    format_timestamp(record.timestamp_ms),
                    record.event.streams[0][:10] + "…",
                )
                for record in records
            ],
        )
        for kind in ("objective", "channel"):
            output.table(
                f"{kind} state: now vs. time travel to offset {earlier}",
                ("field", f"before offset {earlier}", "now"),
                _compare(then[kind], now[kind]),
            )
        output.line(f"hash chain verified: {verified} events, every id recomputed")


def _compare(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for key in now:
        before, after = _short(then.get(key)), _short(now[key])
        marker = "" if before == after else " *"
        rows.append((key + marker, before, after))
    return rows


def _short(value: Any) -> str:
    """A cell that fits a terminal: long hex ids shortened, long values cut in the middle."""
    if value is None:
        return "-"
    text = _compact(value)
    return text if len(text) <= 48 else text[:30] + "…" + text[-12:]


def _compact(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_compact(k)}: {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    text = str(value)
    if text.startswith("0x") and len(text) > 14:
        return f"{text[:8]}…{text[-4:]}"
    return text
