"""``verify``, ``stats`` and ``plugins``: what the log and the installation hold."""

from __future__ import annotations

import os
from collections import Counter
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from chanlog.backends.base import Backend
from chanlog.cli.app import CliContext, json_option, pass_cli
from chanlog.cli.errors import CliError, ExitCode, exit_code_for
from chanlog.config import DEFAULT_BACKEND, file_backend, file_option_of, open_store
from chanlog.errors import ChanlogError, DecodeError, IntegrityError, InvalidArgument
from chanlog.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, default_host
from chanlog.records import Witness
from chanlog.snapshots.manager import stored_snapshot
from chanlog.store import EventStore
from chanlog.telemetry import figures
from chanlog.verification import parse_witness

__all__ = ["plugins_command", "stats_command", "verify_command"]


@click.command("verify")
@click.option(
    "--expect-head",
    "expected_heads",
    multiple=True,
    metavar="OFFSET:HASH",
    help="A head recorded earlier (as verify prints it): the log must reach it and agree. "
    "Repeatable.",
)
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A copy of the log (a file of the same backend) whose head the log must reach and "
    "agree with. Repeatable.",
)
@json_option
@pass_cli
def verify_command(
    state: CliContext, expected_heads: tuple[str, ...], replicas: tuple[Path, ...]
) -> None:
    """Recompute every event id and the hash chain, check the stream index and every
    snapshot, and hold the log against every witness of a later head (ADR 0024); exit 1 at
    the first mismatch."""
    try:
        witnesses = [parse_witness(text) for text in expected_heads]
    except InvalidArgument as exc:  # a malformed option: a usage error, as for `show`
        raise CliError(str(exc), ExitCode.USAGE) from exc
    # No projections: the hashes must be checkable even when a tampered event breaks a fold.
    store = state.open_store(read_only=True, projections=[])
    witnesses += [
        _replica_head(store.backend.name, store.serializer.name, replica) for replica in replicas
    ]
    output = state.output
    try:
        with output.progress("verify", len(store)) as update:
            report = store.check_integrity(
                witnesses=witnesses, progress=lambda done, _total: update(done)
            )
    except IntegrityError as exc:
        if output.json_mode:
            output.json({"ok": False, "offset": exc.offset, "error": str(exc)})
        raise CliError.from_error(exc) from exc
    head = report.head
    head_text = (
        "none (empty log)" if not head.length else f"{head.length - 1}:0x{head.chain_hash.hex()}"
    )
    if output.json_mode:
        output.json(
            {
                "ok": True,
                "records": report.records,
                "chain_hash": "0x" + head.chain_hash.hex(),
                "head": head_text if head.length else None,
                "index_entries": report.index_entries,
                "snapshots": report.snapshots,
                "witnesses": [
                    {"head": str(witness), "source": witness.source} for witness in report.witnesses
                ],
                "unregistered": report.unregistered,
            }
        )
        return
    index = "not kept" if report.index_entries is None else str(report.index_entries)
    output.line(f"ok: {report.records} records verified; chain head 0x{head.chain_hash.hex()}")
    output.line(f"head: {head_text}")
    output.line(
        f"checked: stream index entries {index}, snapshots {report.snapshots}, "
        f"witnesses {len(report.witnesses)}"
        + (f", records of unregistered types {report.unregistered}" if report.unregistered else "")
    )


def _replica_head(backend_name: str, serializer: str, replica: Path) -> Witness:
    """The head of the copy at ``replica`` as a witness (nothing is created or written); a
    copy of the log records the same serializer."""
    known = default_host().backends
    name = backend_name if file_option_of(known.get(backend_name)) else DEFAULT_BACKEND
    backend = file_backend(replica.absolute(), name=name)
    try:
        with open_store(
            read_only=True, projections=[], backend=backend, serializer=serializer
        ) as copy:
            head = copy.backend.head()
    except ChanlogError as exc:
        raise CliError(f"--replica {replica}: {exc}", exit_code_for(exc)) from exc
    if not head.length:
        raise CliError(f"--replica {replica}: the replica is empty", ExitCode.USAGE)
    return Witness(head.length - 1, head.chain_hash, f"replica {replica}")


@click.command("stats")
@json_option
@pass_cli
def stats_command(state: CliContext) -> None:
    """Length, chain head, events per type, entities per projection, latest snapshot; with
    --json also the metrics an operator scrapes (consumers' lag and parked records,
    snapshots stored)."""
    store, unfolded = _open_folding_if_it_can(state)
    backend = store.backend
    head = backend.head()
    counts: Counter[str] = Counter()
    # Reads stored records without decoding them: the type is a column of its own.
    with state.output.progress("replay", head.length) as update:
        for done, stored in enumerate(backend.read(0, head.length), start=1):
            counts[stored.event_type] += 1
            if done % 5000 == 0:
                update(done)
    latest_snapshot, damaged = _latest_snapshot(backend)
    path = getattr(backend, "path", None)
    stats: dict[str, Any] = {
        "backend": backend.name,
        "path": None if path is None else str(path),
        "file_bytes": _file_size(path),
        "serializer": store.serializer.name,
        "length": head.length,
        "chain_hash": "0x" + head.chain_hash.hex(),
        "events_by_type": dict(sorted(counts.items())),
        "entities": None
        if unfolded is not None
        else {name: len(projection) for name, projection in store.projections.items()},
        "latest_snapshot": latest_snapshot,
        # The figures chanlog-otel's gauges report (docs/guides/operating.md, Metrics).
        "metrics": figures(store),
    }
    output = state.output
    if damaged is not None:
        output.note(f"the latest snapshot cannot be read: {damaged}")
    if unfolded is not None:
        output.note(
            f"entities not counted: the projections cannot fold the log ({unfolded}); "
            "'chanlog log' shows those records as stored"
        )
    if output.json_mode:
        output.json(stats)
        return
    summary = {
        key: value for key, value in stats.items() if key not in ("events_by_type", "metrics")
    }
    output.mapping("store", summary)
    if counts:
        output.table(
            "events by type", ("type", "count"), [(name, n) for name, n in sorted(counts.items())]
        )


def _latest_snapshot(backend: Backend) -> tuple[dict[str, Any] | None, str | None]:
    """The newest stored snapshot as ``stats`` shows it, and why it cannot be read when its
    row was changed outside chanlog (its offset, nothing else: the figures that follow do
    not depend on it)."""
    try:
        snapshot = stored_snapshot(backend)
    except DecodeError as exc:
        taken_again = f"take it again there: chanlog snapshot --at {exc.offset}"
        return {"offset": exc.offset, "snapshot_hash": None, "versions": None}, (
            f"{exc} ({taken_again})"
        )
    if snapshot is None:
        return None, None
    return {
        "offset": snapshot.offset,
        "snapshot_hash": "0x" + snapshot.snapshot_hash.hex(),
        "versions": snapshot.versions,
    }, None


def _open_folding_if_it_can(state: CliContext) -> tuple[EventStore, str | None]:
    """The store with its projections; or, when they cannot fold the log only because it
    holds a record of a type no installed plugin registers, without them, and why: every
    figure but the entities is read without folding (ADR 0063). A log the projections
    refuse, or whose records no longer decode, stays an integrity failure."""
    try:
        return state.open_store(read_only=True), None
    except CliError as exc:
        cause = exc.__cause__
        if not isinstance(cause, DecodeError) or cause.event_type in (
            None,
            *default_host().event_types,
        ):
            raise
        return state.open_store(read_only=True, projections=[]), str(cause)


def _file_size(path: object) -> int | None:
    if not isinstance(path, str | os.PathLike):
        return None
    base = Path(path)
    if not base.exists():
        return None
    # The write-ahead log holds committed data too until it is checkpointed.
    extras = [base.with_name(base.name + suffix) for suffix in ("-wal", "-shm")]
    return base.stat().st_size + sum(extra.stat().st_size for extra in extras if extra.exists())


@click.command("plugins")
@json_option
@pass_cli
def plugins_command(state: CliContext) -> None:
    """List the loaded plugins and what each registered."""
    host = default_host()
    distributions: dict[str, tuple[str, str]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is not None:
            distributions[entry_point.name] = (dist.name, dist.version)
    registered: dict[str, dict[str, list[str]]] = {name: {} for name in host.plugin_names()}
    for contribution in host.contributions():
        kinds = registered.setdefault(contribution.plugin, {})
        kinds.setdefault(contribution.kind, []).append(contribution.name)
    plugins: list[dict[str, Any]] = []
    for name, kinds in registered.items():
        builtin = name in BUILTIN_PLUGINS
        dist_name, version = distributions.get(name, ("chanlog", _chanlog_version()))
        plugins.append(
            {
                "name": name,
                "origin": "built-in" if builtin else "entry point",
                "distribution": dist_name if not builtin else "chanlog",
                "version": version if not builtin else _chanlog_version(),
                "registered": kinds,
            }
        )
    output = state.output
    if output.json_mode:
        output.json({"plugins": plugins})
        return
    rows = []
    for plugin in plugins:
        kinds = plugin["registered"]
        described = "; ".join(_describe(kind, names) for kind, names in kinds.items()) or "-"
        rows.append(
            (
                plugin["name"],
                plugin["origin"],
                f"{plugin['distribution']} {plugin['version']}",
                described,
            )
        )
    output.table("plugins", ("plugin", "origin", "distribution", "registered"), rows)


def _describe(kind: str, names: list[str]) -> str:
    label = kind.replace("_", " ")
    if kind == "event_types" and len(names) > 6:
        return f"{label}: {len(names)} ({', '.join(names[:3])}, ...)"
    return f"{label}: {', '.join(names)}"


def _chanlog_version() -> str:
    from chanlog import __version__

    return __version__
